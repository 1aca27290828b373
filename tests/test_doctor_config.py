"""config.toml (every key, and flag > env > .env > config.toml precedence) and `chatcli doctor`."""

from __future__ import annotations

import pytest

from chatcli.settings import load_settings

CONFIG = {
    "openai_api_key": ("api_key", '"sk-config-1234567"', "sk-config-1234567"),
    "openai_base_url": ("base_url", '"http://127.0.0.1:1/v1"', "http://127.0.0.1:1/v1"),
    "model": ("model", '"config-model"', "config-model"),
    "redis_url": ("redis_url", '"redis://127.0.0.1:2/0"', "redis://127.0.0.1:2/0"),
    "key_prefix": ("key_prefix", '"cfg:"', "cfg:"),
    "max_history_tokens": ("max_history_tokens", "1234", 1234),
    "timeout": ("timeout", "7.5", 7.5),
    "ttl": ("ttl", "3600", 3600),
}
ENV_NAMES = {
    "api_key": "OPENAI_API_KEY",
    "base_url": "OPENAI_BASE_URL",
    "model": "CHATCLI_MODEL",
    "redis_url": "CHATCLI_REDIS_URL",
    "key_prefix": "CHATCLI_KEY_PREFIX",
    "max_history_tokens": "CHATCLI_MAX_HISTORY_TOKENS",
    "timeout": "CHATCLI_TIMEOUT",
    "ttl": "CHATCLI_TTL",
}
OTHER = {  # a second valid value per setting, as text
    "api_key": "sk-other-987654321",
    "base_url": "http://127.0.0.1:3/v1",
    "model": "other-model",
    "redis_url": "redis://127.0.0.1:4/0",
    "key_prefix": "other:",
    "max_history_tokens": "999",
    "timeout": "3",
    "ttl": "60",
}


def write_config(home, keys=CONFIG) -> None:
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text("".join(f"{key} = {CONFIG[key][1]}\n" for key in keys))


def test_every_config_key_is_read(tmp_path):
    home = tmp_path / "h"
    write_config(home)
    settings = load_settings(environ={"CHATCLI_HOME": str(home)}, cwd=tmp_path)
    for _key, (name, _toml, value) in CONFIG.items():
        assert getattr(settings, name) == value, name
        assert settings.sources[name] == "config.toml", name


@pytest.mark.parametrize("name", list(ENV_NAMES))
def test_precedence_is_flag_then_env_then_dotenv_then_config(tmp_path, name):
    home = tmp_path / "h"
    write_config(home)
    env_name = ENV_NAMES[name]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / ".env").write_text(f"{env_name}={OTHER[name]}\n")
    environ = {"CHATCLI_HOME": str(home)}
    config_value = CONFIG[next(k for k, v in CONFIG.items() if v[0] == name)][2]
    convert = type(config_value)

    dotenv = load_settings(environ=environ, cwd=cwd)
    assert (getattr(dotenv, name), dotenv.sources[name]) == (convert(OTHER[name]), f".env:{env_name}")

    env_value = {"api_key": "sk-env-11112222", "max_history_tokens": "555", "timeout": "4", "ttl": "30"}.get(
        name, OTHER[name] + "env"
    )
    if name == "base_url":
        env_value = "http://127.0.0.1:5/v1"
    if name == "redis_url":
        env_value = "redis://127.0.0.1:6/0"
    env = load_settings(environ={**environ, env_name: env_value}, cwd=cwd)
    assert (getattr(env, name), env.sources[name]) == (convert(env_value), f"env:{env_name}")

    flag = load_settings({name: config_value}, environ={**environ, env_name: env_value}, cwd=cwd)
    assert (getattr(flag, name), flag.sources[name]) == (config_value, "flag")


def test_config_toml_drives_a_real_turn(cli, model, monkeypatch, home, rdb):
    for name in ("CHATCLI_REDIS_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name)
    (home / "config.toml").write_text(
        f'redis_url = "{cli.environ["CHATCLI_REDIS_URL"]}"\nopenai_base_url = "{model.base_url}"\n'
        'openai_api_key = "sk-from-config-1234"\nmodel = "test-model"\nkey_prefix = "cfg:"\nttl = 500\n'
    )
    result = cli("ask", "-s", "c", "hi")
    assert result.exit_code == 0, result.stderr
    assert model.chat_requests()[-1]["model"] == "test-model"
    assert model.requests[-1]["headers"]["authorization"] == "Bearer sk-from-config-1234"
    assert rdb.llen("cfg:c") == 2 and 0 < rdb.ttl("cfg:c") <= 500


def lines(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():  # "ok  " or "FAIL", two spaces, the name in 19 columns, the detail
        found[line[6:25].strip()] = f"{line[:4].strip()} {line[26:].strip()}"
    return found


@pytest.mark.any_redis
def test_doctor_reports_each_setting_and_check_and_passes(cli, model, monkeypatch, home, is_cluster):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-abcdefgh1234")
    (home / "config.toml").write_text("ttl = 86400\n")
    result = cli("doctor", "--model", "test-model")
    assert result.exit_code == 0, result.stdout
    found = lines(result.stdout)
    assert found["model"].startswith("ok 'test-model'  [flag]")
    assert found["api_key"] == "ok sk-…1234  [env:OPENAI_API_KEY]"
    assert found["api key"] == "ok sk-…1234  [env:OPENAI_API_KEY]"
    assert "sk-secret" not in result.stdout
    assert found["ttl"] == "ok 86400 s  [config.toml]"
    assert found["timeout"] == "ok 60 s  [default]"
    assert found["base_url"] == f"ok {model.base_url}  [env:OPENAI_BASE_URL]"
    assert found["redis"].startswith("ok ") and "Redis " in found["redis"]
    assert ("Redis Cluster, 3 primaries" in found["redis"]) == is_cluster
    assert found["model endpoint"].startswith("ok ") and found["model known"].startswith("ok test-model")
    assert model.requests[-1]["path"].endswith("/models")
    assert model.requests[-1]["headers"]["authorization"] == "Bearer sk-secret-abcdefgh1234"


def test_doctor_fails_on_an_unknown_model_an_unreachable_endpoint_and_redis(cli, model, monkeypatch):
    unknown = cli("doctor", "--model", "no-such-model")
    assert unknown.exit_code == 1
    assert "FAIL" in unknown.stdout and "no-such-model is not among the models" in unknown.stdout

    monkeypatch.setenv("CHATCLI_REDIS_URL", "redis://:pw123@127.0.0.1:9/0")
    broken = cli("doctor", "--base-url", "http://127.0.0.1:9/v1")
    assert broken.exit_code == 1
    found = lines(broken.stdout)
    assert found["redis"].startswith("FAIL") and "pw123" not in broken.stdout
    assert found["model endpoint"].startswith("FAIL")
    assert found["redis_url"] == "ok redis://:***@127.0.0.1:9/0  [env:CHATCLI_REDIS_URL]"

    monkeypatch.setenv("CHATCLI_TIMEOUT", "soon")
    bad = cli("doctor")
    assert bad.exit_code == 1 and "CHATCLI_TIMEOUT" in bad.stdout


def test_the_new_commands_have_help(cli):
    commands = ["history import", "sessions adopt", "sessions rename", "sessions fork", "sessions prune", "doctor"]
    for command in commands:
        result = cli(*command.split(), "--help")
        assert result.exit_code == 0 and "Usage" in result.stdout, command
    assert "--ttl" in cli("chat", "--help").stdout and "--ttl" in cli("ask", "--help").stdout
    assert "--all" in cli("sessions", "list", "--help").stdout


def test_the_source_of_chatcli_home_is_named_right(tmp_path):
    (tmp_path / ".env").write_text(f"CHATCLI_HOME={tmp_path / 'from-dotenv'}\n")
    assert load_settings(environ={}, cwd=tmp_path).sources["home"] == ".env:CHATCLI_HOME"
    from_env = load_settings(environ={"CHATCLI_HOME": str(tmp_path / "e")}, cwd=tmp_path)
    assert from_env.sources["home"] == "env:CHATCLI_HOME" and from_env.home == tmp_path / "e"
    assert load_settings(environ={}, cwd=tmp_path / "nowhere").sources["home"] == "default"
