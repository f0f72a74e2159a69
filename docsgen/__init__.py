"""Build-time pieces of the documentation site (``mkdocs.yml`` loads :mod:`docsgen.hooks`) and the helpers
the documentation checks in ``tests/docs/`` share with it. Not part of the installed package."""
