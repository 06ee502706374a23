"""Use cases: what a user can ask of Prelabel, one module per area. The JSON API, the HTML pages and
the CLI's local commands call these; they call the stores (Redis), the object store (S3) and the
broker, never the other way round."""
