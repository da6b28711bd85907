"""worldsim.progress on tqdm: callers report the count done so far, a resumed run's earlier work stays out of the rate,
and a log file (stderr not a terminal) gets a few lines, not one per update."""

from __future__ import annotations

from worldsim.progress import LOG_EVERY_S, Progress


def test_update_takes_the_count_done_and_close_prints_the_last_line(capsys):
    p = Progress(100, "collect", "frames")
    for done in (10, 40, 40, 90):  # counts so far, as collect's workers report them, not increments
        p.update(done, "2 episodes")
    assert p.bar.n == 90
    p.close(100, "7 episodes")
    err = capsys.readouterr().err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("collect") and "100/100" in last and "frames" in last and "7 episodes" in last


def test_a_resumed_run_leaves_its_earlier_work_out_of_the_rate(capsys):
    p = Progress(1000, "train world", initial=400)
    p.update(450)
    meter = p.bar.format_dict
    assert (meter["n"], meter["initial"], meter["total"]) == (450, 400, 1000)  # the rate counts 50 steps
    p.close(450)


def test_a_log_file_gets_a_few_lines_not_one_per_update(capsys):
    p = Progress(10_000, "dream")
    assert p.bar.mininterval == LOG_EVERY_S  # pytest's captured stderr is no terminal
    for done in range(1, 10_001):
        p.update(done)
    p.close(10_000)
    lines = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()
    assert 1 <= len(lines) <= 3 and "10000/10000" in lines[-1]
