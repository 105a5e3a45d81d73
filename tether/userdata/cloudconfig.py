"""One cloud-config part: load it and work out how it merges (``merge_how`` / ``merge_type`` keys in the
part, then the ``Merge-Type`` / ``X-Merge-Type`` MIME header, else cloud-init's default)."""

from __future__ import annotations

from typing import Any

from tether.userdata import merge

_DEFAULT = merge.policy(merge.PART_DEFAULT)


def policy_for(cfg: dict[str, Any], headers: dict[str, str]) -> tuple[merge.Policy, list[str]]:
    """Pop the merge keys from ``cfg`` (they are instructions, not configuration) and build the policy.

    Returns the policy and a message per spec that could not be used (that spec is then ignored)."""
    problems: list[str] = []
    parsed: list[tuple[str, list[str]]] = []
    how = cfg.pop("merge_how", None)
    typ = cfg.pop("merge_type", None)
    key, spec = ("merge_how", how) if how is not None else ("merge_type", typ)
    try:
        parsed.extend(merge.parse_spec(spec))
    except merge.MergeSpecError as e:
        problems.append(f"{key}: {e}; ignored")
    header_name = next((h for h in ("merge-type", "x-merge-type") if headers.get(h, "").strip()), None)
    if header_name:
        try:
            parsed.extend(merge.parse_string(headers[header_name]))
        except merge.MergeSpecError as e:
            problems.append(f"{header_name.title()} header: {e}; ignored")
    if not parsed:
        return _DEFAULT, problems
    try:
        return merge.build(parsed), problems
    except merge.MergeSpecError as e:
        problems.append(f"{e}; merged with the default {merge.PART_DEFAULT} instead")
        return _DEFAULT, problems
