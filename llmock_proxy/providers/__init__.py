"""One module per API family; :mod:`llmock_proxy.providers.catalog` lists them and
identifies the family of a request."""
