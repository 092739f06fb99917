"""Configurations for the native pipelines (Fluent Bit, Logstash, Elasticsearch ingest).

Every file is generated from what the Python parser itself runs on: the Grok
files in ``patterns/`` and the reason taxonomy in ``named_senderr/reasons.py``;
the tests regenerate them and compare with ``conf/``, so the copies there
cannot drift.
"""
