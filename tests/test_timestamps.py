"""Every wrapper's time becomes RFC 3339 UTC; zone-less times use the configured zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from named_senderr.errors import ConfigError
from named_senderr.normalize.timestamp import _utc, _utc_minute, _utc_second, resolve_zone
from tests.parsing import make_normalizer


def test_named_print_time_is_read_in_the_configured_zone():
    assert make_normalizer("Europe/Berlin").to_rfc3339("21-Nov-2026 04:48:39.750") == "2026-11-21T03:48:39.750Z"


def test_named_print_time_in_summer_uses_daylight_saving_offset():
    assert make_normalizer("Europe/Berlin").to_rfc3339("01-Jul-2026 12:00:00.000") == "2026-07-01T10:00:00.000Z"


def test_iso8601_utc_print_time_ignores_the_configured_zone():
    assert make_normalizer("America/New_York").to_rfc3339("2019-03-14T09:22:33.123Z") == "2019-03-14T09:22:33.123Z"


def test_iso8601_print_time_without_zone_uses_the_configured_zone():
    assert make_normalizer("America/New_York").to_rfc3339("2019-03-14T10:22:33.123") == "2019-03-14T14:22:33.123Z"


def test_rfc3339_offset_with_colon_is_converted():
    assert make_normalizer().to_rfc3339("2020-11-05T14:22:01.553210+01:00") == "2020-11-05T13:22:01.553210Z"


def test_journalctl_short_iso_offset_without_colon_is_converted():
    assert make_normalizer().to_rfc3339("2021-06-14T03:04:05+0200") == "2021-06-14T01:04:05Z"


def test_nanosecond_fraction_is_kept():
    assert make_normalizer().to_rfc3339("2021-08-01T00:00:22.000000001Z") == "2021-08-01T00:00:22.000000001Z"


def test_rfc3164_time_takes_the_current_year_when_that_is_not_in_the_future():
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert make_normalizer(now=now).to_rfc3339("Oct 21 10:22:33") == "2026-10-21T10:22:33Z"


def test_rfc3164_time_from_december_read_in_january_is_last_year():
    now = datetime(2027, 1, 2, 0, 0, tzinfo=UTC)
    assert make_normalizer(now=now).to_rfc3339("Dec 31 23:59:59") == "2026-12-31T23:59:59Z"


def test_rfc3164_space_padded_day_and_fraction():
    assert make_normalizer().to_rfc3339("Mar  2 08:15:27.123456") == "2026-03-02T08:15:27.123456Z"


def test_localized_month_names_are_understood():
    normalizer = make_normalizer()
    assert normalizer.to_rfc3339("Okt 21 10:22:33") == "2026-10-21T10:22:33Z"
    assert normalizer.to_rfc3339("mar 28 13:05:18") == "2026-03-28T13:05:18Z"


def test_openwrt_time_with_weekday_and_year():
    assert make_normalizer().to_rfc3339("Mon May 15 11:16:51 2017") == "2017-05-15T11:16:51Z"


def test_journald_realtime_microseconds_are_exact_utc():
    assert make_normalizer("Asia/Tokyo").to_rfc3339("1627776024000000") == "2021-08-01T00:00:24.000000Z"


def test_monotonic_time_since_boot_has_no_wall_clock_time():
    assert make_normalizer().to_rfc3339("[1214.004210]") is None


def test_impossible_date_gives_no_timestamp():
    assert make_normalizer().to_rfc3339("99-Bad-9999 99:99:99.999") is None


def test_utc_offset_of_a_day_or_more_gives_no_timestamp():
    assert make_normalizer().to_rfc3339("2021-06-14T03:04:05+7200") is None


def test_event_whose_iso_time_has_an_impossible_offset_is_kept_and_flagged():
    from tests.parsing import make_parser

    event = make_parser().parse("2021-06-14T03:04:05+7200 client 192.0.2.1#53: error sending response: unset")
    assert event.client_ip == "192.0.2.1"
    assert event.timestamp is None and event.timestamp_valid is False


def test_unknown_zone_is_a_config_error_naming_the_zone():
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        resolve_zone("Mars/Olympus")


def test_event_with_impossible_date_is_kept_and_flagged():
    from tests.parsing import make_parser

    event = make_parser().parse("99-Bad-9999 99:99:99.999 client 192.0.2.1#53: error sending response: unset")
    assert event.client_ip == "192.0.2.1"
    assert event.timestamp is None and event.timestamp_valid is False


ZONES_WITH_CHANGES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Africa/Monrovia", "Asia/Kathmandu")
# Local times of offset changes in those zones: to and from summer time, a half-hour shift, offsets with seconds.
CHANGES = [datetime(2026, 3, 29, 2), datetime(2026, 10, 25, 3), datetime(2026, 3, 8, 2), datetime(2026, 11, 1, 2),
           datetime(2026, 4, 5, 2), datetime(2026, 10, 4, 2), datetime(1972, 1, 7), datetime(1986, 1, 1)]  # fmt: skip
NEAR_CHANGES = st.builds(
    lambda change, minutes: change + timedelta(minutes=minutes), st.sampled_from(CHANGES), st.integers(-180, 180)
)


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from(ZONES_WITH_CHANGES),
    st.one_of(NEAR_CHANGES, st.datetimes(min_value=datetime(1880, 1, 1), max_value=datetime(2040, 12, 31))),
    st.sampled_from([0, 1, 29, 30, 59, 60, 61]),
)
def test_a_minute_converted_once_gives_each_second_its_own_conversion(zone_name: str, moment: datetime, second: int):
    """Across changes to and from summer time, half-hour shifts and offsets with seconds (Monrovia until 1972)."""
    zone = resolve_zone(zone_name)
    args = (moment.year, moment.month, moment.day, f"{moment.hour:02d}", f"{moment.minute:02d}", f"{second:02d}")
    reference = _utc_second(moment.year, moment.month, moment.day, moment.hour, moment.minute, second, zone)
    assert _utc(*args, zone) == reference


def test_minutes_beside_a_change_of_offset_convert_exactly_and_seconds_offsets_each_second_alone():
    zone = resolve_zone("Europe/Berlin")
    assert _utc_minute(2026, 3, 29, 1, 59, zone) == "2026-03-29T00:59"
    assert _utc(2026, 3, 29, "01", "59", "59", zone) == "2026-03-29T00:59:59"
    assert _utc(2026, 3, 29, "03", "00", "00", zone) == "2026-03-29T01:00:00"
    assert _utc_minute(1971, 6, 1, 12, 0, resolve_zone("Africa/Monrovia")) is None  # offset -0:44:30
