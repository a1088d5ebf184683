"""chainwarden's benchmark (`make bench`): a generated corpus, the performance figures, and a table of them."""
