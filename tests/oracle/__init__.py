"""Real validators that tests/test_oracles.py compares chainwarden with: OpenSSL and the JVM."""
