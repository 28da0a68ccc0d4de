"""Tests of who may ask what: API keys and roles, the key check on every path (Flask and the express
lane), rate limits, limits on sizes, CORS, the audit trail, and what the logs never hold."""
