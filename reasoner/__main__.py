from reasoner.cli import main

raise SystemExit(main())
