"""HTTP layer: parse, authenticate, validate, and answer in CVAT's shapes."""
