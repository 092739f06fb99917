"""``named-senderr setup elasticsearch``: install the ECS index template before the first ship."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from named_senderr.errors import ConfigError
from named_senderr.settings.loading import load_ship_config
from named_senderr.sinks import es_setup
from named_senderr.sinks.http import HttpClient

EPILOG = """\
installs on the cluster of each elasticsearch+/opensearch+ sink:
  an index template (conf/elasticsearch/index-template.json) for INDEX:
  client.ip as ip (CIDR queries), keywords for event.reason, bind.*, host.name,
  dns.question.name; @timestamp a date; message text
  --lifecycle  an ILM policy (Elasticsearch) or ISM policy (OpenSearch): delete after 90 days,
               and with --data-stream also roll over at 30 days or 50 GB
  --data-stream  make INDEX a data stream (OpenSearch 2.x, Elasticsearch with data streams)

examples:
  named-senderr setup elasticsearch --to elasticsearch+http://127.0.0.1:9200/named-senderr
  named-senderr setup elasticsearch --to opensearch+https://os:9200/named-senderr --data-stream --lifecycle
  named-senderr setup elasticsearch --config /etc/named-senderr.toml
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "setup",
        help="install the index template in Elasticsearch or OpenSearch",
        description="Prepare a store for named-senderr's events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("store", choices=("elasticsearch",), help="what to set up (OpenSearch too)")
    parser.add_argument("--to", action="append", default=[], metavar="URL", help="elasticsearch+/opensearch+ URL")
    parser.add_argument("--config", type=Path, metavar="FILE.toml", help="take the sinks (and auth, TLS) from here")
    parser.add_argument("--lifecycle", action="store_true", help="also install an ILM/ISM policy")
    parser.add_argument("--data-stream", action="store_true", help="make the index a data stream")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = load_ship_config(args.config, args.to, {})
    targets = [s for s in config.sinks if s.kind in ("elasticsearch", "opensearch")]
    if not targets:
        raise ConfigError("setup elasticsearch: no elasticsearch+ or opensearch+ sink given; add --to URL")
    for sink in targets:
        client = HttpClient(sink, {"Accept": "application/json"})
        try:
            product = sink.kind
            es_setup.check_features(client, product, args.lifecycle, args.data_stream)
            steps = es_setup.plan(sink.index or "", product, args.lifecycle, args.data_stream)
            for line in es_setup.apply(client, steps):
                print(f"named-senderr: {sink.name} ({product}): {line}", file=sys.stderr)
            warning = es_setup.mapping_warning(client, sink.index or "")
            if warning:
                print(f"named-senderr: {sink.name}: warning: {warning}", file=sys.stderr)
        except es_setup.SetupError as exc:
            raise es_setup.SetupError(f"{sink.name}: {exc}") from None
        finally:
            client.close()
    return 0
