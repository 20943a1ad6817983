"""Legacy files and raw payloads reach the exchange through the adapters, with confirms."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path

import orjson
import pika
import pytest

from adapters.lineage import SqliteLineage
from adapters.registry import get_adapter
from broker import topology
from broker.ingress.ingest import RawRunner, ingest_files
from broker.ops.metrics import format_label
from broker.transports.amqp import blocking_channel

pytestmark = pytest.mark.rabbitmq

PUBLIC = Path(__file__).resolve().parent / "fixtures" / "public"


def route_queue_depth(broker) -> int:
    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    try:
        return channel.queue_declare(topology.ROUTE_QUEUE, passive=True).method.message_count
    finally:
        connection.close()


def test_the_public_street_crime_file_is_ingested_completely_with_confirms(broker, tmp_path):
    # Given the published City of London street-level crime file (483 rows)
    source = tmp_path / "street.csv"
    shutil.copy(PUBLIC / "2017-01-city-of-london-street.csv", source)
    # When it is ingested through the police-uk-csv adapter
    summary = ingest_files(broker.settings, get_adapter("police-uk-csv"), "city-of-london", [source], progress=None)
    # Then every row is published and confirmed, none rejected, and all wait on the route queue
    assert (summary.read, summary.published, sum(summary.rejected.values())) == (483, 483, 0)
    assert route_queue_depth(broker) == 483


def test_records_an_adapter_cannot_translate_go_to_a_rejects_file_naming_where_and_why(broker, tmp_path):
    source = tmp_path / "street.csv"
    rows = (PUBLIC / "2017-01-city-of-london-street.csv").read_text().splitlines()
    rows[3] = rows[3].replace("2017-01", "2017-13")  # a month that does not exist
    source.write_text("\n".join(rows) + "\n")
    summary = ingest_files(broker.settings, get_adapter("police-uk-csv"), "city-of-london", [source], progress=None)
    assert summary.published == 482 and sum(summary.rejected.values()) == 1
    reject = (tmp_path / "street.csv.rejects.ndjson").read_text()
    assert "line" in reject and "month" in reject.lower()


def test_the_raw_runner_translates_a_court_result_and_acks_the_raw_message_after_confirms(broker):
    xml = (PUBLIC / "cjse-spi-results-034a-valid-asn-format.xml").read_bytes()
    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    channel.confirm_delivery()
    channel.basic_publish(
        topology.RAW_EXCHANGE,
        "cjse-spi",
        xml,
        pika.BasicProperties(
            message_id="spi-034a", headers={"x-adapter": "cjse-spi", "x-mapping": "libra-spi"}, delivery_mode=2
        ),
        mandatory=True,
    )
    connection.close()
    summary = RawRunner(broker.settings, get_adapter).run(stop_when_idle=True, idle_seconds=0.5)
    assert (summary.read, summary.published) == (1, 1)
    assert route_queue_depth(broker) == 1
    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    assert channel.queue_declare(topology.RAW_QUEUE, passive=True).method.message_count == 0
    connection.close()


def test_every_ingested_record_names_its_adapter_in_the_format_header(broker, tmp_path):
    # Given the street-crime file ingested from a file, and a court result through the raw runner
    source = tmp_path / "street.csv"
    shutil.copy(PUBLIC / "2017-01-city-of-london-street.csv", source)
    ingest_files(broker.settings, get_adapter("police-uk-csv"), "city-of-london", [source], progress=None)
    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    channel.confirm_delivery()
    channel.basic_publish(
        topology.RAW_EXCHANGE,
        "cjse-spi",
        (PUBLIC / "cjse-spi-results-034a-valid-asn-format.xml").read_bytes(),
        pika.BasicProperties(
            message_id="spi-034a", delivery_mode=2, headers={"x-adapter": "cjse-spi", "x-mapping": "libra-spi"}
        ),
        mandatory=True,
    )
    connection.close()
    RawRunner(broker.settings, get_adapter).run(stop_when_idle=True, idle_seconds=0.5)
    # When the route queue is read
    published = broker.drain(broker.settings.core_vhost, topology.ROUTE_QUEUE)
    # Then every record carries x-interchange-format with its adapter's name (the worker's format label)
    formats = collections.Counter(props.headers.get("x-interchange-format") for props, _body in published)
    assert formats == {"police-uk-csv": 483, "cjse-spi": 1}
    assert format_label(published[0][0].headers) == "police-uk-csv"


def test_a_raw_payload_naming_an_unknown_adapter_is_dead_lettered_with_the_suggestion(broker):
    # Given a raw payload whose header misspells the adapter
    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    channel.confirm_delivery()
    channel.basic_publish(
        topology.RAW_EXCHANGE,
        "cjse-spi",
        b"<xml/>",
        pika.BasicProperties(
            message_id="raw-1", headers={"x-adapter": "cjse-sp", "x-mapping": "libra-spi"}, delivery_mode=2
        ),
        mandatory=True,
    )
    connection.close()
    # When the raw runner reads it
    RawRunner(broker.settings, get_adapter).run(stop_when_idle=True, idle_seconds=0.5)
    # Then it is dead-lettered with the reason and a "did you mean", and the raw queue is empty
    [(props, body)] = broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE)
    assert props.headers["x-interchange-reason"] == "adapter_error" and body == b"<xml/>"
    assert "did you mean 'cjse-spi'" in props.headers["x-interchange-errors"]
    assert broker.drain(broker.settings.core_vhost, topology.RAW_QUEUE) == []


def test_an_amended_court_result_in_a_later_raw_message_supersedes_the_earlier_version(broker):
    # Given the public court result and then the same result amended (fine 45 -> 60), as two raw messages
    original = (PUBLIC / "cjse-spi-results-034a-valid-asn-format.xml").read_bytes()
    amended = original.replace(b"<DC:ResultAmountSterling>45.00<", b"<DC:ResultAmountSterling>60.00<")
    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    channel.confirm_delivery()
    for n, body in enumerate((original, amended)):
        channel.basic_publish(
            topology.RAW_EXCHANGE,
            "cjse-spi",
            body,
            pika.BasicProperties(
                message_id=f"spi-{n}", headers={"x-adapter": "cjse-spi", "x-mapping": "libra-spi"}, delivery_mode=2
            ),
            mandatory=True,
        )
    connection.close()
    # When one raw runner reads both
    RawRunner(broker.settings, get_adapter).run(stop_when_idle=True, idle_seconds=0.5)
    # Then the second record has a new id and supersedes the first
    first, second = (
        orjson.loads(body) for _props, body in broker.drain(broker.settings.core_vhost, topology.ROUTE_QUEUE)
    )
    assert second["id"] != first["id"]
    assert second["supersedes"] == {"id": first["id"], "kind": "correction"}


def test_a_file_with_a_trailing_empty_column_is_ingested_whole_with_one_notice(broker, tmp_path):
    # Given the street file with a trailing empty column on every line
    source = tmp_path / "2017-01-city-of-london-street.csv"
    lines = (PUBLIC / "2017-01-city-of-london-street.csv").read_text().splitlines()
    source.write_text("".join(line + ",\n" for line in lines))
    # When it is ingested
    summary = ingest_files(broker.settings, get_adapter("police-uk-csv"), "city-of-london", [source], progress=None)
    # Then every row is published, nothing is rejected, and the file is reported once
    assert (summary.read, summary.published, sum(summary.rejected.values())) == (483, 483, 0)
    assert summary.notices == {"csv_extra_columns": 1}
    assert "csv_extra_columns" in (tmp_path / f"{source.name}.rejects.ndjson").read_text()


def test_a_changed_custody_resend_in_a_later_file_supersedes_the_published_version(broker, tmp_path):
    # Given last night's custody export ingested with a lineage file
    fixture = Path(__file__).resolve().parents[1] / "adapters" / "custody_csv" / "fixtures" / "force-a-custody.csv"
    first, second, store = tmp_path / "monday.csv", tmp_path / "tuesday.csv", tmp_path / "lineage.sqlite"
    shutil.copy(fixture, first)
    second.write_bytes(fixture.read_bytes().replace(b",RUI", b",NFA"))  # the second detainee's disposal changed
    ingest_files(
        broker.settings,
        get_adapter("custody-csv"),
        "force-a-custody",
        [first],
        progress=None,
        lineage=SqliteLineage(store),
    )
    # When tonight's export re-sends both rows, one of them changed
    ingest_files(
        broker.settings,
        get_adapter("custody-csv"),
        "force-a-custody",
        [second],
        progress=None,
        lineage=SqliteLineage(store),
    )
    # Then the unchanged row is published again with the same id, and the changed one supersedes its version
    published = [orjson.loads(body) for _props, body in broker.drain(broker.settings.core_vhost, topology.ROUTE_QUEUE)]
    monday, tuesday = published[:2], published[2:]
    assert tuesday[0] == monday[0]
    assert tuesday[1]["id"] != monday[1]["id"]
    assert tuesday[1]["supersedes"] == {"id": monday[1]["id"], "kind": "correction"}
