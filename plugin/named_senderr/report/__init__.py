"""``named-senderr report``: one Summary of send errors, from log files, Elasticsearch/OpenSearch or Loki."""
