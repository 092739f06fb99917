"""The generated Logstash ruby filter under Ruby, against the ECS documents ``parse`` writes.

A minimal stand-in for Logstash's Event (get/set/remove with [field][refs])
runs the script exactly as the ruby filter's ``path`` option loads it: the
captures it reads are the grok captures (Python's, as Onigmo gives the same).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from named_senderr.event import Event, to_ecs
from named_senderr.export.logstash import ruby_filter
from named_senderr.export.source import taxonomy
from tests.parsing import make_parser
from tests.test_export import seen_corpus, tool

HARNESS = r"""
require "json"
class Event
  def initialize(data) = @data = data
  def to_hash = @data
  def keys(ref) = ref.start_with?("[") ? ref.scan(/\[([^\]]+)\]/).flatten : [ref]
  def get(ref) = keys(ref).reduce(@data) { |h, k| h.is_a?(Hash) ? h[k] : nil }
  def set(ref, value)
    *path, last = keys(ref)
    path.reduce(@data) { |h, k| h[k] ||= {} }[last] = value
  end
  def remove(ref)
    *path, last = keys(ref)
    path.reduce(@data) { |h, k| h[k] || {} }.delete(last)
  end
end
load ARGV[0]
register({ "source" => "named_senderr" })
File.foreach(ARGV[1]) do |row|
  out = filter(Event.new(JSON.parse(row)))
  puts JSON.generate(out.empty? ? nil : out[0].to_hash)
end
"""
IGNORED = ("@timestamp", "@metadata")  # the date filter's job, and Logstash-internal


@pytest.fixture(scope="module")
def logstash_filter(tmp_path_factory):
    ruby = tool("ruby", install="apt-get install -y ruby")
    work = tmp_path_factory.mktemp("logstash")
    (work / "filter.rb").write_text(ruby_filter(taxonomy()))
    (work / "harness.rb").write_text(HARNESS)

    def run(events: list[dict]) -> list[dict | None]:
        (work / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
        command = [ruby, "-W0", str(work / "harness.rb"), str(work / "filter.rb"), str(work / "events.jsonl")]
        result = subprocess.run(command, capture_output=True, timeout=60, check=True)
        return [json.loads(line) for line in result.stdout.splitlines()]

    return run


def test_every_text_corpus_line_gives_the_ecs_document_of_parse(logstash_filter):
    """Journal JSON lines are left out: Logstash reads those through a json codec, not grok on a line."""
    seen = [s for s in seen_corpus() if not s.journal]
    results = logstash_filter([{"message": s.text, "named_senderr": s.captures} for s in seen])
    parser = make_parser()
    wrong = []
    for s, document in zip(seen, results, strict=True):
        event = parser.parse(s.text)
        if not isinstance(event, Event):
            if document is not None:
                wrong.append((s.text, "kept", document))
            continue
        expected = to_ecs(event, "ingest-time")
        expected["bind"].pop("timestamp_valid", None)
        got = {k: v for k, v in (document or {}).items() if k not in IGNORED}
        if got != {k: v for k, v in expected.items() if k not in IGNORED}:
            wrong.append((s.text, got, expected))
    assert wrong == []
    assert sum(d is not None for d in results) > 150


def test_time_as_logged_is_left_for_the_date_filter(logstash_filter):
    line = "21-Oct-2019 10:22:33.204 client 192.0.2.7#53: error sending response: unset"
    captures = {"named_time": "21-Oct-2019 10:22:33.204", "client_ip": "192.0.2.7", "client_port": "53"}
    captures |= {"phrase": "error sending response", "reason_text": "unset", "bind_message": line[25:]}
    [document] = logstash_filter([{"message": line, "named_senderr": captures}])
    assert document["@metadata"]["named_senderr_time"] == "21-Oct-2019 10:22:33.204"


def test_event_without_captures_is_dropped(logstash_filter):
    assert logstash_filter([{"message": "anything"}]) == [None]
