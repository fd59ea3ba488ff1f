"""Math answers: extraction, pre-filters, normalisation, exact/numeric/symbolic tiers, the `math` verifier."""
