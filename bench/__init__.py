"""chainwarden's benchmark (`make bench`): a generated corpus, the figures of issue 6, and a table of them."""
