"""Code that runs inside the sandbox: the zygote (fork server), the solution runner and the tester.

This package is imported two ways: as `sandbox._inside` by the supervisor (for the wire format and the
Landlock probe) and as the top-level package `_inside` by the zygote, which is started with `python -I -S`
and sees only this directory. Modules here therefore import each other relatively and never import
anything from the outer `sandbox` package.
"""
