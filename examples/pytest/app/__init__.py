"""A small weather assistant: the code under test in the llmock-proxy pytest example."""
