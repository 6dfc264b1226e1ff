"""bench.visitor's summary (each row's median, range and goal over the runs), its floor app (Gradio around no
model) and bench.batching's batched app."""

import pytest

from bench import pipeline_app, visitor


def test_the_floor_app_answers_without_a_model(photo):
    assert pipeline_app.build_app(None).fn(photo) == {"no model": 1.0}


def run_with(**figures: float) -> dict[str, float]:
    """One run's figures: every row at its goal, but those given by keyword (by their order in ROWS)."""
    rows = list(visitor.ROWS.values())
    values = {row.name: row.goal for row in rows}
    for index, value in figures.items():
        values[rows[int(index.removeprefix("row"))].name] = value
    return values


def test_each_row_gives_its_median_range_and_goal_and_says_whether_the_median_meets_it():
    runs = [run_with(row0=90, row10=1.4), run_with(row0=130, row10=2.0), run_with(row0=95, row10=1.7)]
    lines = visitor.summary(runs)
    assert len(lines) == len(visitor.ROWS)
    classify, throughput = lines[0], lines[10]
    assert classify.startswith("/classify through gradio_client") and "median   95.00 ms" in classify
    assert "(range 90.00-130.00, 3 runs), goal <= 100: met" in classify
    assert "median    1.70 x" in throughput and "goal >= 1.5: met" in throughput
    assert visitor.summary([run_with(row0=101)])[0].endswith("goal <= 100: NOT met")
    assert visitor.summary([run_with(row10=1.49)])[10].endswith("goal >= 1.5: NOT met")


@pytest.mark.parametrize("option", ["--runs", "--images", "--clients", "--requests"])
def test_a_count_below_one_is_refused(option):
    with pytest.raises(SystemExit):
        visitor.parse_args([option, "0"])


def test_the_batched_app_answers_each_photo_of_a_batch_as_the_plain_app_answers_it_alone(tiny_checkpoints, photo, cat):
    """bench.batching compares the two apps: each must give every visitor the answer to their own photo."""
    model = str(tiny_checkpoints[("vit", "classification")])
    plain, batched = pipeline_app.build_app(model), pipeline_app.build_app(model, batch=4)
    assert batched.batch and batched.max_batch_size == 4 and not plain.batch
    [answers] = batched.fn([photo, cat, photo])
    alone = [plain.fn(photo), plain.fn(cat), plain.fn(photo)]
    assert [list(a) for a in answers] == [list(a) for a in alone], "the same labels, in the same order"
    assert all(a == pytest.approx(b, abs=1e-5) for a, b in zip(answers, alone, strict=True))  # batched kernels differ
    assert answers[0] != answers[1], "the tiny model tells the two photos apart: a mixed-up batch would show"
