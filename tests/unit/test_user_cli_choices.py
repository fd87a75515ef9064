"""`ppo-client user import --choices`, `user describe`, `user show`/`list` with choices and descriptions,
and what `user score` refuses before it asks the server."""

import numpy as np
import pytest

from ppo_client.cli import main
from ppo_client.head import PreferenceHead
from ppo_client.store import UserStore
from tests.unit.test_user_store import picture


@pytest.fixture()
def folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        picture(photos / f"{i}.png", i)
    (photos / "choices.csv").write_text("shown,chosen\n0.png|1.png|2.png|3.png,1.png\n2.png|3.png,none\n")
    (photos / "ratings.csv").write_text("0.png,7\n1.png,4\n")
    return photos


def test_choices_import_describe_show_and_list(tmp_path, folder, capsys):
    store = ["--store", str(tmp_path / "store.sqlite")]
    name = "[red]eve"
    assert main(["user", "create", name, *store]) == 0
    assert main(["user", "import", name, "--csv", str(folder / "ratings.csv"), *store]) == 0
    assert main(["user", "import", name, "--choices", str(folder / "choices.csv"), *store]) == 0
    assert "imported 2 choices for '[red]eve'" in capsys.readouterr().err
    assert main(["user", "describe", name, "dark [bold]blue[/bold] scenes", *store]) == 0
    assert main(["user", "describe", name, "  moody blue; no yellow  ", *store]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == ["1", "2"] and "saved version 2" in captured.err
    assert main(["user", "show", name, *store]) == 0
    out = capsys.readouterr().out
    assert "[red]eve: 2 ratings" in out
    assert "2 choices (1 picked one, 1 none or no preference)" in out and "from csv:choices.csv: 2" in out
    assert "description (version 2, " in out and "): moody blue; no yellow" in out


def test_a_user_without_choices_or_description_shows_only_the_ratings_line(tmp_path, capsys):
    store = ["--store", str(tmp_path / "store.sqlite")]
    assert main(["user", "create", "ann", *store]) == 0
    capsys.readouterr()
    assert main(["user", "show", "ann", *store]) == 0
    assert capsys.readouterr().out == "ann: 0 ratings\n"


def test_bad_choices_and_descriptions_are_refused_with_the_reason(tmp_path, folder, capsys):
    store = ["--store", str(tmp_path / "store.sqlite")]
    assert main(["user", "create", "bo", *store]) == 0
    (folder / "bad.csv").write_text("0.png|1.png,0.png\n0.png|1.png,3.png\n")
    assert main(["user", "import", "bo", "--choices", str(folder / "bad.csv"), *store]) == 2
    assert "bad.csv row 2: chosen '3.png' is not one of the images shown" in capsys.readouterr().err
    assert main(["user", "describe", "bo", "x" * 1001, *store]) == 2
    assert main(["user", "describe", "bo", "blue\x07", *store]) == 2
    assert main(["user", "describe", "nobody", "blue", *store]) == 2
    err = capsys.readouterr().err
    assert "1 to 1000 characters" in err and "control or format" in err and "unknown user 'nobody'" in err
    with UserStore(tmp_path / "store.sqlite") as s:
        assert s.choices("bo") == [] and s.description("bo") is None
    with pytest.raises(SystemExit) as exited:  # one source per import
        main(["user", "import", "bo", "--choices", str(folder / "choices.csv"), "--csv", str(folder / "ratings.csv"), *store])
    assert exited.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_score_refuses_unreadable_images_and_unknown_models_before_the_server(tmp_path, folder, capsys):
    store = ["--store", str(tmp_path / "store.sqlite")]
    nowhere = ["--url", "127.0.0.1:9"]  # nothing listens: reaching the server would fail differently
    assert main(["user", "create", "cy", *store]) == 0
    assert main(["user", "score", "cy", str(folder / "0.png"), *store, *nowhere]) == 2
    assert "has no trained model" in capsys.readouterr().err
    with UserStore(tmp_path / "store.sqlite") as s:
        model = s.save_model("cy", "ridge", "enc", PreferenceHead.linear(np.ones(4), 0.0), {}, {})
    assert main(["user", "score", "cy", str(folder / "0.png"), "--model", str(model + 1), *store, *nowhere]) == 2
    assert f"has no model {model + 1}" in capsys.readouterr().err
    assert main(["user", "score", "cy", str(folder / "0.png"), str(folder / "choices.csv"), *store, *nowhere]) == 2
    assert "choices.csv" in capsys.readouterr().err
