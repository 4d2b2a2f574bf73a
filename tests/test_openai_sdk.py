"""The `openai` SDK against the proxy and backend as processes: its exceptions carry our reason and code."""
from __future__ import annotations

import sys

import openai
import pytest

from tests.helpers import REPO_ROOT, stack_dirs

sys.path.insert(0, str(REPO_ROOT / "scripts"))

from stack import backend, proxy  # noqa: E402


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sdk")
    models, logs = stack_dirs(folder)
    with backend(models, logs) as backend_url, proxy(models, logs, "http://127.0.0.1:9", backend_url) as (url, _):
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)


def test_sdk_error_for_an_unknown_model_says_how_to_pull_it(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="acme/tiny-GGUF:Q4_K_M", messages=[{"role": "user", "content": "hi"}])

    assert "is not installed; pull it first" in str(caught.value)
    assert '{"model": "acme/tiny-GGUF:Q4_K_M"}' in str(caught.value)
    assert caught.value.code == "model_not_found"


def test_sdk_error_for_a_bad_request_carries_the_reason(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.completions.create(model="m", prompt="x", extra_body={"top_k": 1.5})

    assert caught.value.code == "invalid_request" and caught.value.param == "top_k"  # the backend's, passed on
    assert "top_k" in str(caught.value)


def test_sdk_error_for_an_unsupported_field_names_it_in_param(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], n=2)

    assert caught.value.param == "n" and caught.value.code == "invalid_request"  # the proxy's own check
