import pytest

from enforcer.core.keyref import is_alias, normalise_key_ref
from enforcer.errors import ConfigError


@pytest.mark.parametrize(
    ("ref", "canonical"),
    [
        ("my-key", "my-key"),
        ("arn:aws:kms:my-key", "my-key"),  # MinIO's form
        ("  my-key ", "my-key"),
        ("1234abcd-12ab-34cd-56ef-1234567890ab", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        (
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        ("arn:aws-cn:kms:cn-north-1:111122223333:key/abc", "abc"),
        ("alias/app", "alias/app"),
        ("arn:aws:kms:eu-west-1:111122223333:alias/app", "alias/app"),
    ],
)
def test_normalise(ref: str, canonical: str) -> None:
    assert normalise_key_ref(ref) == canonical


def test_no_substring_matching() -> None:
    # A key whose name contains the required one is a different key.
    assert normalise_key_ref("arn:aws:kms:team-key-old") != normalise_key_ref("team-key")
    assert normalise_key_ref("arn:aws:kms:us-east-1:1:key/abc") != normalise_key_ref("ab")


@pytest.mark.parametrize("bad", ["", "arn:aws:kms:", "arn:aws:s3:::bucket", "arn:aws:kms:r:1:key/"])
def test_malformed_references_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        normalise_key_ref(bad)


def test_is_alias() -> None:
    assert is_alias("alias/x")
    assert is_alias("arn:aws:kms:r:1:alias/x")
    assert not is_alias("arn:aws:kms:x")
