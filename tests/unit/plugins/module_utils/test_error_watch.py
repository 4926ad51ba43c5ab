"""The verify window's error-rate watch over an nginx JSON access log (the nginx role's ec2ops_json lines)."""

import json
import os

from ansible_collections.ec2ops.stack.plugins.module_utils._error_watch import ErrorWatch

NEW = "10.0.0.7:8080"
OLD = "10.0.0.3:8080"


def line(addr, status, upstream_status=None):
    return json.dumps({"status": status, "upstream_addr": addr, "upstream_status": upstream_status or str(status)})


def write(path, lines):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(entry + "\n" for entry in lines))


def test_counts_only_the_new_release_and_only_what_came_after_start(tmp_path):
    log = tmp_path / "ticketing.access.log"
    write(log, [line(NEW, 500)] * 30)  # before start: not the window's
    watch = ErrorWatch(str(log), [NEW], max_percent=2, min_requests=50).start()
    write(log, [line(OLD, 500)] * 20 + [line(NEW, 200)] * 45 + [line(NEW, 502)] * 4)
    ok, detail = watch.poll()
    assert ok and (watch.total, watch.errors) == (49, 4)
    assert detail.endswith(": too few to judge")
    write(log, [line(NEW, 200)])
    ok, detail = watch.poll()
    assert not ok
    assert detail == "8.0% of its requests failed with 5xx (4 of 50 through nginx; limit 2% over at least 50 requests)"


def test_a_healthy_release_under_load_passes(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    watch = ErrorWatch(str(log), [NEW, "10.0.0.8:8080"], max_percent=2, min_requests=50).start()
    write(log, ([line(NEW, 200)] * 99 + [line("10.0.0.8:8080", 503)]) * 3)
    ok = watch.poll()[0]
    assert ok and watch.total == 300 and watch.errors == 3


def test_a_retried_request_counts_for_the_server_that_answered_it(tmp_path):
    log = tmp_path / "a.log"
    log.write_text("")
    watch = ErrorWatch(str(log), [NEW], max_percent=0, min_requests=1).start()
    write(log, [line(f"{OLD}, {NEW}", 200, "502, 200")])
    assert watch.poll()[0] and watch.total == 1
    write(log, [line(f"{NEW}, {OLD}", 200, "502, 200")])  # NEW failed, OLD answered: not the new release's answer
    assert watch.poll()[0] and watch.total == 1


def test_half_written_lines_wait_and_a_rotated_log_is_read_from_its_start(tmp_path):
    log = tmp_path / "a.log"
    write(log, [line(NEW, 200)] * 10)
    watch = ErrorWatch(str(log), [NEW], max_percent=10, min_requests=2).start()
    whole = line(NEW, 500)
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(whole[:10])
    assert watch.poll()[0] and watch.total == 0
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(whole[10:] + "\n")
    watch.poll()
    assert (watch.total, watch.errors) == (1, 1)
    os.rename(log, tmp_path / "a.log.1")  # logrotate
    write(log, [line(NEW, 500), line(NEW, 200), "not json", "[1, 2]"])
    ok = watch.poll()[0]
    assert (watch.total, watch.errors) == (3, 2) and not ok


def test_a_missing_log_counts_nothing(tmp_path):
    watch = ErrorWatch(str(tmp_path / "none.log"), [NEW]).start()
    assert watch.poll() == (True, watch.describe()) and watch.total == 0
