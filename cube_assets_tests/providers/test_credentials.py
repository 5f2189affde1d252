"""Credential declarations: env references only, resolved from the environment, bound to their hosts, never shown."""

from __future__ import annotations

import pickle

import pytest

from cube_assets.errors import ProviderError
from cube_assets.providers.credentials import Secret, check_credentials_spec, credentials_from_spec


def test_literal_secret_in_credentials_is_refused_without_repeating_it() -> None:
    with pytest.raises(ProviderError, match=r"credentials.password must be a reference") as raised:
        check_credentials_spec({"type": "basic", "username": {"env": "U"}, "password": "hunter2"}, "provider x")
    assert "hunter2" not in str(raised.value)


def test_missing_credentials_variable_is_named_and_no_value_shown() -> None:
    spec = {"type": "basic", "username": {"env": "STAC_USER"}, "password": {"env": "STAC_PASSWORD"}}
    with pytest.raises(ProviderError, match="environment variable STAC_PASSWORD is not set"):
        credentials_from_spec(spec, {"STAC_USER": "alice"}, "provider x", "stac.example")


def test_credentials_go_by_default_only_to_the_provider_host() -> None:
    spec = {"type": "bearer", "token": {"env": "TOKEN"}}
    credentials = credentials_from_spec(spec, {"TOKEN": "t0k3n"}, "provider x", "stac.example")
    assert credentials is not None
    assert credentials.applies_to("https://stac.example/search")
    assert not credentials.applies_to("https://bucket.s3.amazonaws.com/B04.tif")
    assert "t0k3n" not in repr(credentials)


def test_secret_hides_its_value_and_cannot_be_pickled() -> None:
    secret = Secret("s3cr3t")
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret) and "s3cr3t" not in f"{[secret]}"
    assert secret.reveal() == "s3cr3t"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
