"""A small Django site for the framework tests: ORM (SQLite or PostgreSQL), a template, an
outbound HTTP call.  Configured from the environment (see ``settings``); ``djsite.wsgi`` creates
the tables and exposes ``application``."""
