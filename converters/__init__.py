"""Source converters: one module per public dataset.

Each module declares the files its source needs (URL and checksum, or manual-download
instructions), detects the source layout, yields samples in the shared schema and can
write a miniature copy of its exact source layout for tests and ``aims demo``.
"""
