"""Generate tests/compat/data/cloudinit-schema-verdicts.json: cloud-init's `schema -c` verdict for every file in
the shared cloud-init corpus. Run once by hand, not by the tests (it needs cloud-init, which tether does not
depend on):

    apt-get download cloud-init && dpkg-deb -x cloud-init_*.deb /tmp/ci
    python3 -m venv --system-site-packages /tmp/civenv && /tmp/civenv/bin/pip install configobj
    /tmp/civenv/bin/python tests/compat/tools/gen_schema_verdicts.py /tmp/ci/usr/lib/python3/dist-packages

What is cloud-init's own and what is not (also written into the data file):
- schema checks: cloud-init's validator (cloudinit.config.schema.validate_cloudconfig_schema, strict) from the
  package given, run against the corpus's schema-cloud-config-v1.json (the newer schema). The newer schema's
  ``changed`` / ``deprecated_version`` annotations are registered the way newer cloud-init does (a deprecation,
  message "<Kind> in version V. <description>"), because the older validator does not know ``changed``;
- templates: rendered by cloud-init's own jinja renderer (cloudinit.handlers.jinja_template) with INSTANCE_DATA;
- which user-data types are evaluated (only text/cloud-config; other known start lines "not currently evaluated",
  exit 0; an unknown first line an error, exit 1): newer cloud-init's schema command as read, re-implemented here.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[3] / "shared" / "compat" / "cloud-init"
OUT = HERE.parent / "data" / "cloudinit-schema-verdicts.json"
INSTANCE_DATA = {"v1": {"instance_id": "iid-schema-0001", "local_hostname": "schema-host", "region": None},
                 "ds": {"meta_data": {"instance-id": "iid-schema-0001"}}}
# newer cloud-init's start lines (no #upstart-job any more), longest first, matched lower-cased after lstrip
STARTS = {"#include": "text/x-include-url", "#include-once": "text/x-include-once-url",
          "#!": "text/x-shellscript", "#cloud-config": "text/cloud-config", "#part-handler": "text/part-handler",
          "#cloud-boothook": "text/cloud-boothook", "#cloud-config-archive": "text/cloud-config-archive",
          "#cloud-config-jsonp": "text/cloud-config-jsonp", "## template: jinja": "text/jinja2"}


def type_of(text: str) -> str | None:
    low = text.lower().lstrip()
    for start in sorted(STARTS, key=len, reverse=True):
        if low.startswith(start):
            return STARTS[start]
    return None


def main(pkg: str) -> None:
    sys.path.insert(0, pkg)
    import jsonschema
    import yaml
    from cloudinit import version
    from cloudinit.config import schema as S
    from cloudinit.handlers import jinja_template

    def annotated(kind: str):  # newer cloud-init's deprecation annotations
        def check(_v, flag, _inst, schema):
            if flag:
                v = schema.get(f"{kind}_version", "devel")
                yield S.SchemaDeprecationError(f" {kind.capitalize()} in version {v}. "
                                               f"{schema.get(f'{kind}_description', '')}".rstrip())
        return check

    jsonschema.Draft4Validator.VALIDATORS["changed"] = annotated("changed")
    S._validator_deprecated = annotated("deprecated")
    schema = json.loads((CORPUS / "cloudinit/config/schemas/schema-cloud-config-v1.json").read_text())
    idata = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(INSTANCE_DATA, idata)
    idata.close()

    verdicts = {}
    files = sorted(p for p in (CORPUS / "doc").rglob("*") if p.is_file())
    files += sorted((CORPUS / "tests/data/merge_sources").glob("*.yaml"))
    for path in files:
        rel = str(path.relative_to(CORPUS))
        text = path.read_text()
        v = {"type": None, "verdict": "", "exit": 0, "errors": [], "deprecations": []}
        ctype = type_of(text)
        if ctype == "text/jinja2":
            text = jinja_template.render_jinja_payload(text, rel, json.load(open(idata.name)))
            ctype = type_of(text)
            v["rendered"] = True
        v["type"] = ctype
        if ctype is None:
            v.update(verdict="unrecognized header", exit=1)
        elif ctype != "text/cloud-config":
            v.update(verdict="not evaluated", exit=0)
        else:
            try:
                cfg = yaml.safe_load(text)
            except yaml.YAMLError:
                v.update(verdict="invalid yaml", exit=1)
                verdicts[rel] = v
                continue
            if not isinstance(cfg, dict):
                v.update(verdict="not a dict", exit=1)
            else:
                try:
                    S.validate_cloudconfig_schema(cfg, schema, strict=True)
                    v.update(verdict="valid", exit=0)
                except S.SchemaValidationError as e:
                    v["errors"] = [[p.path, p.message] for p in e.schema_errors]
                    v["deprecations"] = [[p.path, p.message] for p in e.schema_deprecations]
                    v.update(verdict="invalid" if e.schema_errors else "valid", exit=1 if e.schema_errors else 0)
        verdicts[rel] = v
    OUT.write_text(json.dumps({
        "_how": __doc__.split("What is cloud-init's own", 1)[1].strip(),
        "generated_by": "tests/compat/tools/gen_schema_verdicts.py",
        "cloud_init_package": f"cloud-init {version.version_string()} (Debian 12 cloud-init_22.4.2-1+deb12u4)",
        "schema": "corpus cloudinit/config/schemas/schema-cloud-config-v1.json",
        "instance_data": INSTANCE_DATA,
        "verdicts": verdicts}, indent=1, sort_keys=True) + "\n")
    print(f"{len(verdicts)} verdicts -> {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
