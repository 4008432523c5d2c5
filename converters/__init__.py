"""Source converters: for each public dataset a record, a converter and a miniature.

``<source>_record.py`` declares every fact about the dataset (a
:class:`~aims.converters.record.SourceRecord`); ``<source>.py`` finds its files and reads one
sample at a time (:class:`~aims.converters.base.SourceConverter`); ``<source>_miniature.py``
writes a small copy of its exact release layout for tests and ``aims demo``. The built-in
sources are listed, one line each, in :data:`aims.converters.registry.BUILTIN_SOURCES`.
"""
