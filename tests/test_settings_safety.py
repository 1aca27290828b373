"""Settings that cannot be hijacked: a project's REDIS_URL, a .env that names a base URL, the API langchain
picks by model name; and `doctor` against a server without /models."""

from __future__ import annotations

import pytest

from chatcli.settings import load_settings
from tests.model_server import Reply


def test_redis_url_of_a_project_is_not_read_from_the_environment_or_dotenv(tmp_path):
    (tmp_path / ".env").write_text("REDIS_URL=redis://127.0.0.1:9/3\n")
    environ = {"REDIS_URL": "redis://127.0.0.1:8/2", "CHATCLI_HOME": str(tmp_path)}
    settings = load_settings(environ=environ, cwd=tmp_path)
    assert settings.redis_url is None and settings.sources["redis_url"] == "default"
    chosen = load_settings(environ={"CHATCLI_REDIS_URL": "redis://127.0.0.1:7/1", "CHATCLI_HOME": str(tmp_path)})
    assert chosen.redis_url == "redis://127.0.0.1:7/1"


def hijacking_dotenv(cwd, model, extra: str = "") -> None:
    (cwd / ".env").write_text(f"OPENAI_BASE_URL={model.base_url}\n{extra}")


def test_a_dotenv_base_url_never_receives_the_key_from_the_environment(cli, model, rdb, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own-key-1234")
    hijacking_dotenv(tmp_path / "cwd", model)
    for command in (["ask", "-s", "h", "hi"], ["chat", "-s", "h"]):
        result = cli(*command, input="hi\n")
        assert result.exit_code == 2, result.stdout
        line = result.stderr.strip()
        assert line.count("\n") == 0
        assert "./.env (OPENAI_BASE_URL)" in line and "the environment (OPENAI_API_KEY)" in line
        assert "sk-users" not in result.stderr
    assert model.requests == [] and rdb.exists("message_store:h") == 0

    doctor = cli("doctor")
    assert doctor.exit_code == 1 and "./.env (OPENAI_BASE_URL)" in doctor.stdout
    assert model.requests == []  # not even GET /models with the key


def test_a_key_goes_to_a_base_url_from_the_same_dotenv_or_one_the_user_set(cli, model, rdb, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_BASE_URL")
    cwd = tmp_path / "cwd"
    hijacking_dotenv(cwd, model, "OPENAI_API_KEY=sk-the-dotenvs-key-99\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own-key-1234")  # the environment wins for the key...
    assert cli("ask", "-s", "a", "hi").exit_code == 2  # ...so the .env's URL would get the user's key: refused

    monkeypatch.delenv("OPENAI_API_KEY")
    same = cli("ask", "-s", "a", "hi")
    assert same.exit_code == 0, same.stderr
    assert model.requests[-1]["headers"]["authorization"] == "Bearer sk-the-dotenvs-key-99"

    monkeypatch.setenv("OPENAI_API_KEY", "sk-users-own-key-1234")
    flagged = cli("ask", "-s", "b", "hi", "--base-url", model.base_url)  # the user chose the URL
    assert flagged.exit_code == 0, flagged.stderr
    assert model.requests[-1]["headers"]["authorization"] == "Bearer sk-users-own-key-1234"

    (cwd / ".env").write_text("")  # no key at all: nothing to protect, a placeholder goes
    monkeypatch.delenv("OPENAI_API_KEY")
    hijacking_dotenv(cwd, model)
    assert cli("ask", "-s", "c", "hi").exit_code == 0


def test_a_config_toml_under_a_home_the_dotenv_chose_counts_as_the_dotenv(tmp_path):
    from chatcli.settings import key_destination_problem

    home = tmp_path / "planted"
    home.mkdir()
    (home / "config.toml").write_text('openai_base_url = "http://127.0.0.1:9/v1"\n')
    (tmp_path / ".env").write_text(f"CHATCLI_HOME={home}\n")
    settings = load_settings(environ={"OPENAI_API_KEY": "sk-users-own-key-1234"}, cwd=tmp_path)
    problem = key_destination_problem(settings)
    assert problem and str(home / "config.toml") in problem and "the environment (OPENAI_API_KEY)" in problem
    # the user's own CHATCLI_HOME: its config.toml is the user's
    mine = load_settings(environ={"OPENAI_API_KEY": "sk-users-own-key-1234", "CHATCLI_HOME": str(home)}, cwd=tmp_path)
    assert key_destination_problem(mine) is None


def test_a_codex_model_name_stays_on_chat_completions_for_a_custom_base_url(cli, model, rdb, monkeypatch):
    result = cli("ask", "-s", "cx", "hi", "-m", "gpt-5-codex")
    assert result.exit_code == 0, result.stderr
    assert model.requests[-1]["path"].endswith("/chat/completions")
    assert model.chat_requests()[-1]["model"] == "gpt-5-codex"

    monkeypatch.setenv("CHATCLI_API", "responses")  # asked for: the server has no /responses
    asked = cli("ask", "-s", "cx2", "hi", "-m", "gpt-5-codex")
    assert asked.exit_code == 4
    assert model.requests[-1]["path"].endswith("/responses")
    assert "Responses API, POST /responses" in asked.stderr and "CHATCLI_API=chat" in asked.stderr


def test_a_model_error_names_the_chat_completions_api(cli, model, rdb):
    model.script(Reply(status=404, text="no such model"))
    result = cli("ask", "-s", "e", "hi", "-m", "nope")
    assert result.exit_code == 4
    assert "Chat Completions API, POST /chat/completions" in result.stderr and "'nope'" in result.stderr


def test_an_unknown_api_setting_is_a_usage_error(cli, model, monkeypatch):
    monkeypatch.setenv("CHATCLI_API", "graphql")
    result = cli("ask", "hi")
    assert result.exit_code == 2 and "CHATCLI_API must be one of chat, responses, auto" in result.stderr


def doctor_lines(output: str) -> dict[str, str]:
    return {line[6:25].strip(): f"{line[:4].strip()} {line[26:].strip()}" for line in output.splitlines()}


@pytest.mark.parametrize("chat_works", [True, False])
def test_doctor_takes_a_server_without_models_as_a_warning_when_chat_works(cli, model, chat_works):
    model.serve_models = False
    if not chat_works:
        model.script(Reply(status=500, text="broken"))
    result = cli("doctor", "--model", "test-model")
    found = doctor_lines(result.stdout)
    assert model.requests[-1]["path"].endswith("/chat/completions")
    assert model.chat_requests()[-1]["max_tokens"] == 1
    if chat_works:
        assert result.exit_code == 0, result.stdout
        assert found["model endpoint"].startswith("ok warning:") and "HTTP 404" in found["model endpoint"]
        assert found["model known"].startswith("ok test-model")
    else:
        assert result.exit_code == 1
        assert found["model endpoint"].startswith("FAIL") and "HTTP 500" in found["model endpoint"]
