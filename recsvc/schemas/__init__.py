"""marshmallow schemas: the request schemas validate and load straight into core types; the response
schemas document what the views dump. /openapi.json is generated from these same classes."""
