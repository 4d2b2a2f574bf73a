"""Settings: every field says its variable and meaning, from_env reads each, gunicorn's config goes through them."""
from __future__ import annotations

import dataclasses
import runpy

import pytest

from core.env import describe
from proxy.settings import Settings as ProxySettings
from server.settings import Settings as BackendSettings
from tests.helpers import REPO_ROOT


@pytest.mark.parametrize("cls", [ProxySettings, BackendSettings], ids=["proxy", "backend"])
def test_every_setting_is_described_where_it_is_defined(cls):
    for field in dataclasses.fields(cls):
        assert "env" in field.metadata and field.metadata.get("help"), field.name


def test_contract_variables_are_read():
    described = {env for env, _, _ in describe(ProxySettings)} | {env for env, _, _ in describe(BackendSettings)}
    contract = {"MODELS_DIR", "BACKEND_URL", "HF_ENDPOINT", "HF_TOKEN", "PROXY_API_KEY", "ALLOWED_REPOS",
                "PULL_CONCURRENCY", "PULL_QUEUE_MAX", "PULL_CONNECTIONS", "PULL_STALL_TIMEOUT_S", "PRELOAD_MODELS",
                "PULL_MAX_RETRIES", "N_GPU_LAYERS", "N_CTX", "N_THREADS", "MAX_LOADED_MODELS", "BACKEND_TIMEOUT_S",
                "PORT", "BACKEND_PORT", "HOST"}
    assert contract - described == set()


def test_from_env_parses_by_type_and_empty_keeps_the_default():
    settings = ProxySettings.from_env({"BACKEND_TIMEOUT_S": "7.5", "ALLOWED_REPOS": " a/* ,, b/*", "PORT": "",
                                       "PULL_CONNECTIONS": "2"})
    assert (settings.backend_timeout_s, settings.allowed_repos, settings.port, settings.pull_connections) == (
        7.5, ("a/*", "b/*"), 8080, 2)
    assert BackendSettings.from_env({"FLASH_ATTN": "off", "N_CTX": "512"}).flash_attn is False
    with pytest.raises(ValueError, match="PULL_QUEUE_MAX"):
        ProxySettings.from_env({"PULL_QUEUE_MAX": "many"})


def test_gunicorn_config_reads_its_values_through_settings(monkeypatch):
    for name, value in {"HOST": "127.0.0.2", "PORT": "9123", "PROXY_THREADS": "3", "FORWARD_MAX_IN_FLIGHT": "5",
                        "PROXY_GRACEFUL_TIMEOUT_S": "7", "LOG_LEVEL": "debug"}.items():
        monkeypatch.setenv(name, value)

    config = runpy.run_path(str(REPO_ROOT / "proxy" / "gunicorn.conf.py"))

    assert config["bind"] == ["127.0.0.2:9123"] and config["threads"] == 8
    assert (config["graceful_timeout"], config["loglevel"]) == (7, "debug")


def test_one_access_log_format_without_query_strings():
    from core.serving import ACCESS_LOG_FORMAT
    from server.__main__ import gunicorn_options

    config = runpy.run_path(str(REPO_ROOT / "proxy" / "gunicorn.conf.py"))
    assert config["access_log_format"] == gunicorn_options(BackendSettings())["access_log_format"] == ACCESS_LOG_FORMAT
    assert "%(U)s" in ACCESS_LOG_FORMAT and "%(r)s" not in ACCESS_LOG_FORMAT and "%(q)s" not in ACCESS_LOG_FORMAT
