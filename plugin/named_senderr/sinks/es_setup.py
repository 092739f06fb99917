"""Install the index template (and optionally a lifecycle policy and a data stream) before shipping.

The template in conf/elasticsearch/ maps the ECS fields the way Kibana and
OpenSearch Dashboards aggregate them: ``client.ip`` as ``ip`` so CIDR queries
work, keywords for reasons, names and views. Elasticsearch gets an ILM policy,
OpenSearch an ISM policy; a rollover action is only kept for a data stream,
the one target that rolls over without a write alias.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import orjson

from named_senderr.errors import NamedSenderrError
from named_senderr.sinks.elasticsearch import error_reason
from named_senderr.sinks.http import HttpClient, Reply

PRIVILEGES_FIX = "check the credentials and the user's privileges (manage_index_templates, manage_ilm or ISM)"
_PACKAGE_DIR = Path(__file__).resolve().parent.parent


class SetupError(NamedSenderrError):
    """The server refused a setup step; the message says which and what to do."""


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    body: dict | None
    what: str


# The API each option needs, checked before any change so an unsupported option changes nothing.
_FEATURES = {
    ("elasticsearch", "lifecycle"): ("/_ilm/policy", "ILM", "--lifecycle"),
    ("opensearch", "lifecycle"): ("/_plugins/_ism/policies", "the ISM plugin", "--lifecycle"),
    ("elasticsearch", "data_stream"): ("/_data_stream", "data streams", "--data-stream"),
    ("opensearch", "data_stream"): ("/_data_stream", "data streams", "--data-stream"),
}


def conf_dir() -> Path:
    """Installed wheels carry conf/ inside the package; checkouts have it at the top."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parent.parent / "conf"):
        if (candidate / "elasticsearch").is_dir():
            return candidate
    raise SetupError(f"no conf/elasticsearch directory next to {_PACKAGE_DIR}; reinstall named-senderr")


def load_json(name: str) -> dict:
    return json.loads((conf_dir() / "elasticsearch" / name).read_text(encoding="utf-8"))


def plan(index: str, product: str, lifecycle: bool, data_stream: bool) -> list[Step]:
    """The requests that set up ``index`` on ``product`` ('elasticsearch' or 'opensearch'), in order."""
    steps = []
    template = load_json("index-template.json")
    template["index_patterns"] = [index]
    if data_stream:
        template["data_stream"] = {}
    if lifecycle and product == "elasticsearch":
        policy = load_json("ilm-policy.json")
        if not data_stream:
            del policy["policy"]["phases"]["hot"]
        template["template"]["settings"]["index"]["lifecycle"] = {"name": index}
        steps.append(Step("PUT", f"/_ilm/policy/{index}", policy, f"ILM policy {index}"))
    if lifecycle and product == "opensearch":
        policy = load_json("ism-policy.json")
        states = policy["policy"]["states"]
        if not data_stream:
            states[0]["actions"] = []
            states[0]["transitions"][0]["conditions"] = {"min_index_age": "90d"}
        patterns = [f".ds-{index}-*"] if data_stream else [index]
        policy["policy"]["ism_template"] = [{"index_patterns": patterns, "priority": 200}]
        steps.append(Step("PUT", f"/_plugins/_ism/policies/{index}", policy, f"ISM policy {index}"))
    steps.append(Step("PUT", f"/_index_template/{index}", template, f"index template {index}"))
    if data_stream:
        steps.append(Step("PUT", f"/_data_stream/{index}", None, f"data stream {index}"))
    return steps


def check_features(client: HttpClient, product: str, lifecycle: bool, data_stream: bool) -> None:
    """Refuse, before changing anything, an option whose API this server lacks."""
    for feature, wanted in (("lifecycle", lifecycle), ("data_stream", data_stream)):
        if not wanted:
            continue
        path, name, option = _FEATURES[product, feature]
        reply = client.request("GET", path)
        if reply.status in (401, 403) or reply.status == 0 or reply.fatal:
            _checked(reply, f"GET {path}")
        if reply.status != 200:
            raise SetupError(
                f"this {product} has no {name} ({reply.status}: {error_reason(reply)}); "
                f"run setup without {option} (the integ-test distributions lack ILM, ISM and Elasticsearch data streams)"
            )


def apply(client: HttpClient, steps: list[Step]) -> list[str]:
    """Run ``steps``; what was done, one line each. An existing data stream or policy is left as it is."""
    done = []
    for step in steps:
        body = orjson.dumps(step.body) if step.body is not None else None
        reply = client.request(step.method, step.path, body, {"Content-Type": "application/json"})
        reason = error_reason(reply) if reply.status >= 300 else ""
        if reply.status in (400, 409) and ("already_exists" in reason or "version_conflict" in reason):
            done.append(f"{step.what}: already there, left as it is")
            continue
        _checked(reply, step.what)
        done.append(f"{step.what}: installed")
    return done


def mapping_warning(client: HttpClient, index: str) -> str | None:
    """A warning when ``index`` already exists with ``client.ip`` not mapped as ``ip`` (templates apply to new indices)."""
    reply = client.request("GET", f"/{index}/_mapping/field/client.ip")
    if reply.status != 200:
        return None
    for found in orjson.loads(reply.body).values():
        mapping = found.get("mappings", {}).get("client.ip", {}).get("mapping", {}).get("ip", {})
        if mapping.get("type") not in (None, "ip"):
            return (
                f"index {index} already exists with client.ip mapped as {mapping['type']!r}; the template applies "
                "to new indices only: reindex into a new index or delete it and ship again"
            )
    return None


def _checked(reply: Reply, what: str) -> Reply:
    if reply.fatal:
        raise SetupError(f"{what}: {reply.fatal}")
    if reply.status == 0:
        raise SetupError(f"{what}: {reply.error}; is the server up at this URL?")
    if reply.status in (401, 403):
        raise SetupError(f"{what}: {reply.status}: {error_reason(reply)}; {PRIVILEGES_FIX}")
    if reply.status >= 300:
        raise SetupError(f"{what}: {reply.status}: {error_reason(reply)}")
    return reply
