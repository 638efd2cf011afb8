"""The static security scan: each rule fires on a tiny snippet and stays quiet on its benign twin."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sandbox.errors import SandboxError
from sandbox.scan import RULES, Finding, ScanPolicy, entropy, scan_paths, scan_source, syntax_errors

# A random-looking 40-character string, built at run time so this file holds no secret-shaped literal.
RANDOM = "".join("aZ3kQ9xP0mL7vB2nR8tY"[i % 20] + "Hs5dW1cJ6"[i % 9] for i in range(20))


def rules(source: str) -> list[str]:
    return [f.rule for f in scan_source(source, "server.py")]


SNIPPETS = [
    ("eval-exec", "eval(user_text)", "ast.literal_eval(user_text)"),
    ("eval-exec", "exec('x = 1')", "print('exec')"),
    ("eval-exec", "import builtins\nbuiltins.eval(s)", "import builtins\nbuiltins.len(s)"),
    ("os-system", "import os\nos.system('ls ' + d)", "import os\nos.listdir(d)"),
    ("os-system", "from os import system as run\nrun('ls')", "from os import listdir as run\nrun('.')"),
    ("os-popen", "import os\nos.popen('ls').read()", "import os\nos.getcwd()"),
    ("subprocess-shell", "import subprocess\nsubprocess.run(cmd, shell=True)",
     "import subprocess\nsubprocess.run(['ls'], shell=False)"),
    ("subprocess-shell", "import subprocess as sp\nsp.check_output(f'grep {x}', shell=flag)",
     "import subprocess as sp\nsp.check_output(['grep', x])"),
    ("write-outside-workdir", "open('/etc/passwd', 'w')", "open('out.txt', 'w')"),
    ("write-outside-workdir", "open('../up.txt', mode='a')", "open('/etc/hostname')"),
    ("write-outside-workdir", "from pathlib import Path\nPath('/usr/x').write_text('y')",
     "from pathlib import Path\nPath('x.txt').write_text('y')"),
    ("rmtree-outside-workdir", "import shutil\nshutil.rmtree('/home')", "import shutil\nshutil.rmtree('build')"),
    ("home-dotfile", "open(os.path.expanduser('~/.ssh/id_rsa')).read()",
     "open(os.path.expanduser('~/notes.txt')).read()"),
    ("home-dotfile", "from pathlib import Path\n(Path.home() / '.aws' / 'credentials').read_text()",
     "from pathlib import Path\n(Path.home() / 'docs').exists()"),
    ("home-dotfile", "data = open('~/.netrc').read()", "data = open('~/readme').read()"),
    ("secret-literal", "KEY = 'sk-" + "a1B2c3D4e5F6g7H8i9J0kLmN'", "MODEL = 'sk-short'"),
    ("secret-literal", "AWS = 'AKIA" + "ABCDEFGHIJKLMNOP'", "AWS = 'AKIA-not-a-key'"),
    ("secret-literal", "GH = 'ghp_" + "A" * 36 + "'", "GH = 'ghp_short'"),
    ("secret-literal", f"api_token = '{RANDOM}'", "api_token = os.environ['API_TOKEN']"),
    ("secret-literal", f"client = Client(secret='{RANDOM}')", f"client = Client(label='{RANDOM}')"),
    ("secret-literal", f"cfg = {{'password': '{RANDOM}'}}", "cfg = {'password': 'hunter2 is my password'}"),
    ("dynamic-import", "import importlib\nimportlib.import_module(name)",
     "import importlib\nimportlib.import_module('json')"),
    ("unsafe-deserialize", "import pickle\npickle.loads(blob)", "import json\njson.loads(blob)"),
    ("subprocess", "import subprocess\nsubprocess.run(['ls'])", "import subprocess\nsubprocess.list2cmdline(['a'])"),
]


@pytest.mark.parametrize(("rule", "bad", "benign"), SNIPPETS)
def test_rule_fires_on_bad_and_not_on_benign(rule, bad, benign):
    assert rule in rules(bad), f"{rule} missed in: {bad}"
    assert rule not in rules(benign), f"{rule} fired on benign: {benign}"


def test_finding_has_file_line_severity_and_a_fix():
    (finding,) = scan_source("import os\n\n\nos.system('x')\n", "srv/server.py")
    assert (finding.file, finding.line, finding.rule, finding.severity) == ("srv/server.py", 4, "os-system", "high")
    assert "subprocess.run" in finding.message and finding.where() == "srv/server.py:4"


def test_one_finding_per_rule_and_line():
    assert rules("import os\nopen(os.path.expanduser('~/.ssh/id_rsa'))") == ["home-dotfile"]


def test_benign_server_has_no_findings():
    source = (
        "import json, subprocess\nfrom mcp.server.mcpserver import MCPServer\nmcp = MCPServer('x')\n"
        "@mcp.tool()\ndef count(text: str) -> int:\n    return len(json.loads(text))\n"
        "API_URL = 'https://example.invalid/v1/items'\ntoken_header = 'Authorization'\n"
    )
    assert scan_source(source) == []


def test_every_rule_is_exercised_here():
    assert {rule for rule, _, _ in SNIPPETS} | {"syntax-error"} == set(RULES)


def test_entropy_separates_keys_from_words():
    assert entropy(RANDOM) > 3.5 > entropy("passwordpassword")


def test_scan_paths_walks_directories_and_skips_venvs(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tools.py").write_text("import os\nos.popen('x')\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "vendored.py").write_text("eval('1')\n")
    (tmp_path / "broken.py").write_text("def f(:\n")
    found = {(f.file.removeprefix(str(tmp_path) + "/"), f.rule) for f in scan_paths([tmp_path])}
    assert found == {("pkg/tools.py", "os-popen"), ("broken.py", "syntax-error")}
    (err,) = syntax_errors([tmp_path])
    assert err.line == 1 and err.severity == "critical" and err.file.endswith("broken.py")
    with pytest.raises(SandboxError, match="does not exist"):
        scan_paths([tmp_path / "missing"])


def _finding(rule: str, severity: str) -> Finding:
    return Finding(file="s.py", line=1, rule=rule, severity=severity, message="m")


def test_policy_blocks_at_and_above_its_severity():
    findings = [_finding("subprocess", "low"), _finding("dynamic-import", "medium"), _finding("os-system", "high"),
                _finding("secret-literal", "critical")]
    assert [f.rule for f in ScanPolicy().blocking(findings)] == ["os-system", "secret-literal"]
    assert [f.rule for f in ScanPolicy(block_at="medium").blocking(findings)] == [
        "dynamic-import", "os-system", "secret-literal"]
    assert [f.rule for f in ScanPolicy(allow_rules=("os-system",)).blocking(findings)] == ["secret-literal"]


def test_policy_refuses_unknown_rules_and_severities():
    with pytest.raises(ValidationError, match=r"unknown rule\(s\) \['os_system'\]"):
        ScanPolicy(allow_rules=("os_system",))
    with pytest.raises(ValidationError, match="block_at"):
        ScanPolicy(block_at="severe")


# A labelled corpus of assignments: is the literal a secret (the scan must flag it) or not (it must stay quiet)?
# The true secrets are assembled at run time so that this file holds none.
_B32 = "JBSWY3DPEHPK3PXP" + "4KZQ7MN2RGT5"  # a base32 one-time-password seed: upper case, but with digits
SECRET_CORPUS: list[tuple[str, bool]] = [
    # Names of environment variables: how servers are told to find their secrets.
    ('KEY_VAR = "OPENWEATHER_API_KEY"\napi_key = os.environ.get(KEY_VAR)', False),
    ('TOKEN_ENV = "GITHUB_PERSONAL_ACCESS_TOKEN"', False),
    ('API_KEY_NAME = "OPENWEATHERMAPAPIKEY"', False),
    ('secret_var = "Mixed_Case_Name_1234"\nsecret = os.getenv(secret_var)', False),
    ('from os import environ\nauth_name = "x9Qm2LpV7rT4kW8z"\nheader = environ[auth_name]', False),
    ('cfg = {"api_key": "STRIPE_SECRET_KEY"}', False),
    ('client = Client(token_env="SLACK_BOT_TOKEN_V2")', False),
    ('password_hint = "correct horse battery staple"', False),
    ('TOKEN_URL = "https://auth.example.invalid/oauth/token"', False),
    # Real-looking credentials.
    (f'api_token = "{RANDOM}"', True),
    (f'SECRET_KEY = "{_B32}"', True),
    (f'client = Client(api_key="{RANDOM[:24]}")', True),
    (f'cfg = {{"password": "{RANDOM[5:30]}"}}', True),
    (f'secret = "{RANDOM}"\nvalue = os.getenv("SECRET")', True),  # passed to nothing: still a literal secret
    ('KEY = "sk-' + 'a1B2c3D4e5F6g7H8i9J0kLmN"', True),
    ('AWS_KEY = "AKIA' + 'ABCDEFGHIJKLMNOP"', True),
]


@pytest.mark.parametrize(("source", "is_secret"), SECRET_CORPUS)
def test_secret_literal_corpus(source, is_secret):
    assert ("secret-literal" in rules("import os\n" + source)) == is_secret, source
