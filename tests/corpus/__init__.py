"""The bad input corpus: declarative cases (cases.py) built into files at test time (build.py).

Nothing here is a certificate: every certificate, key and oversized file is generated when the
tests run, from a fresh PKI, inside a temporary folder.
"""
