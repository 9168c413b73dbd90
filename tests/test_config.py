"""Configuration layers, validation and the kafka-python pass-through."""

from __future__ import annotations

import argparse
import inspect
import tomllib
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from streamgmm.regime import EventDetector, RegimeDetector
from streamgmm.service.kafka.kafka_python import kafka_client_kwargs
from streamgmm.settings.detector import detector_specs
from streamgmm.settings.flags import add_cli_overrides, overrides_from_args
from streamgmm.settings.layers import load_settings
from streamgmm.settings.render import default_config_text
from streamgmm.settings.spec import ConfigError
from streamgmm.settings.table import all_specs
from streamgmm.ticks.keystate import make_pipeline

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_default_file_sets_every_setting_each_with_a_comment(tmp_path: Path) -> None:
    text = default_config_text()
    document = tomllib.loads(text)
    in_file = {f"{section}.{key}" for section, table in document.items() for key in table}
    assert in_file == {spec.name for spec in all_specs()}
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[number - 1].lstrip().startswith("#"), f"undocumented: {line}"
    # Loaded as a config file, the defaults change nothing, [detector] included.
    path = write(tmp_path, text)
    from_file = load_settings(path, {}, {})
    assert set(from_file.detector) == {spec.key for spec in detector_specs()}
    assert make_pipeline(from_file).to_state() == make_pipeline(load_settings()).to_state()


def test_defaults() -> None:
    s = load_settings(None, {}, {})
    assert s.bootstrap_servers == ("localhost:9092",)
    assert s.api_version == (2, 5)
    assert s.metrics_host == "127.0.0.1"
    assert s.input_topic == "ticks"
    assert s.output_topic == "ticks.regimes"
    assert s.dlq_topic == "ticks.dlq"
    assert s.changelog_topic == "streamgmm.changelog"
    assert s.key_field is None
    assert s.emit_policy == "every_tick"
    assert s.tick_kind == "market"
    assert s.out_of_order == "reject"
    assert s.detector == {}  # the detector's own defaults apply
    assert s.security == {"security_protocol": "PLAINTEXT", "ssl_check_hostname": True}


def test_topic_names_derive_from_input_and_group_unless_configured(tmp_path: Path) -> None:
    s = load_settings(None, {}, {"input_topic": "prices", "group_id": "g1"})
    assert (s.output_topic, s.dlq_topic, s.changelog_topic) == (
        "prices.regimes",
        "prices.dlq",
        "g1.changelog",
    )
    path = write(tmp_path, '[topics]\ndlq = "dead"\noutput = "out"\nchangelog = "cl"\n')
    s = load_settings(path, {}, {"input_topic": "prices"})
    assert (s.output_topic, s.dlq_topic, s.changelog_topic) == ("out", "dead", "cl")


def test_precedence_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, '[metrics]\nport = 1111\n[topics]\ninput = "from-file"\n')
    env = {"STREAMGMM_METRICS_PORT": "2222"}
    assert load_settings(path, {}, {}).metrics_port == 1111
    assert load_settings(path, env, {}).metrics_port == 2222
    both = load_settings(path, env, {"metrics_port": 3333})
    assert both.metrics_port == 3333
    assert both.input_topic == "from-file"  # untouched by higher layers
    # A None override (a flag not given) does not mask lower layers.
    assert load_settings(path, env, {"metrics_port": None}).metrics_port == 2222
    # Dotted names work as override keys too.
    assert load_settings(path, env, {"metrics.port": "4444"}).metrics_port == 4444


def test_environment_variable_names_and_parsing() -> None:
    env = {
        "STREAMGMM_KAFKA_BOOTSTRAP_SERVERS": "a:1, b:2",
        "STREAMGMM_KAFKA_API_VERSION": "auto",
        "STREAMGMM_METRICS_ENABLED": "false",
        "STREAMGMM_INPUT_TICK_KIND": "event",
        "STREAMGMM_INPUT_EVENT_FIELDS": "temp,pressure",
        "STREAMGMM_INPUT_KEY_FIELD": "sensor",
        "STREAMGMM_DETECTOR_HALFLIFE": "0.0",
        "STREAMGMM_DETECTOR_DT_UNIT": "auto",
        "PATH": "/usr/bin",
    }
    s = load_settings(None, env, {})
    assert s.bootstrap_servers == ("a:1", "b:2")
    assert s.api_version is None
    assert s.metrics_enabled is False
    assert s.tick_kind == "event"
    assert s.event_fields == ("temp", "pressure")
    assert s.key_field == "sensor"
    # halflife = 0 is the older spelling of None; dt_unit keeps its text.
    assert s.detector == {"halflife": None, "dt_unit": "auto"}


@pytest.mark.parametrize(
    ("var", "value", "setting", "why"),
    [
        ("STREAMGMM_METRICS_PORT", "abc", "metrics.port", "integer"),
        ("STREAMGMM_METRICS_PORT", "70000", "metrics.port", "<= 65535"),
        ("STREAMGMM_KAFKA_API_VERSION", "banana", "kafka.api_version", "auto"),
        ("STREAMGMM_KAFKA_BOOTSTRAP_SERVERS", "nohost", "kafka.bootstrap_servers", "host:port"),
        ("STREAMGMM_TOPICS_INPUT", "bad topic!", "topics.input", "topic name"),
        ("STREAMGMM_INPUT_TICK_KIND", "stock", "input.tick_kind", "market, event"),
        ("STREAMGMM_OUTPUT_EMIT_POLICY", "sometimes", "output.emit_policy", "on_change"),
        ("STREAMGMM_CHECKPOINT_EVERY_SECONDS", "nan", "checkpoint.every_seconds", "finite"),
        ("STREAMGMM_CHECKPOINT_EVERY_RECORDS", "0", "checkpoint.every_records", ">= 1"),
        ("STREAMGMM_METRICS_ENABLED", "maybe", "metrics.enabled", "true or false"),
        # [detector] values are checked by the detector, which names the parameter.
        ("STREAMGMM_DETECTOR_N_REGIMES", "0", "detector.n_regimes", "in [1, 8]"),
        ("STREAMGMM_DETECTOR_HALFLIFE", "-5", "detector.halflife", "must be in [1.0"),
        ("STREAMGMM_DETECTOR_WARMUP", "1", "detector.warmup", "in [2, 10000]"),
        ("STREAMGMM_DETECTOR_DT_UNIT", "daily", "detector.dt_unit", "'auto' or a number"),
        ("STREAMGMM_DETECTOR_ALPHA", "abc", "detector.alpha", "number"),
        ("STREAMGMM_DETECTOR_DRIFT_THRESHOLD", "nan", "detector.drift_threshold", "finite"),
        ("STREAMGMM_SECURITY_SECURITY_PROTOCOL", "TLS", "security.security_protocol", "SASL_SSL"),
    ],
)
def test_bad_value_is_one_line_naming_setting_source_and_value(
    var: str, value: str, setting: str, why: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, {var: value}, {})
    message = str(info.value)
    assert "\n" not in message
    assert setting in message
    assert repr(value) in message
    assert var in message  # where the value came from
    assert why in message


def test_cross_setting_rules() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.heartbeat_interval_ms = 3000 .*lower than"):
        load_settings(None, {"STREAMGMM_KAFKA_SESSION_TIMEOUT_MS": "3000"}, {})
    with pytest.raises(ConfigError, match=r"input\.event_fields"):
        load_settings(None, {"STREAMGMM_INPUT_TICK_KIND": "event"}, {})
    with pytest.raises(ConfigError, match=r"topics\.dlq = 'ticks'.*must differ"):
        load_settings(None, {"STREAMGMM_TOPICS_DLQ": "ticks"}, {})
    with pytest.raises(ConfigError, match=r"security\.security_protocol.*sasl_mechanism"):
        load_settings(None, {"STREAMGMM_SECURITY_SECURITY_PROTOCOL": "SASL_SSL"}, {})


def test_unknown_names_are_errors_with_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^unknown setting kafka\.bootstrap_server in config file .*; "
        r"did you mean kafka\.bootstrap_servers\?$",
    ):
        load_settings(write(tmp_path, '[kafka]\nbootstrap_server = "x:1"\n'), {}, {})
    with pytest.raises(ConfigError, match=r"unknown section \[kafak\] .*did you mean \[kafka\]\?$"):
        load_settings(write(tmp_path, "[kafak]\n"), {}, {})
    with pytest.raises(
        ConfigError,
        match=r"^unknown setting in environment variable STREAMGMM_KAFKA_BOOTSTRAP_SERVER; "
        r"did you mean STREAMGMM_KAFKA_BOOTSTRAP_SERVERS\?$",
    ):
        load_settings(None, {"STREAMGMM_KAFKA_BOOTSTRAP_SERVER": "x:1"}, {})
    with pytest.raises(
        ConfigError, match=r"unknown setting 'input_topics'.*did you mean input_topic"
    ):
        load_settings(None, {}, {"input_topics": "x"})
    with pytest.raises(
        ConfigError, match=r"'kafka\.bootstrap_server' .*did you mean kafka\.bootstrap_servers\?"
    ):
        load_settings(None, {}, {"kafka.bootstrap_server": "x:1"})
    with pytest.raises(
        ConfigError, match=r"'detector\.n_regime' .*did you mean detector\.n_regimes"
    ):
        load_settings(None, {}, {"detector.n_regime": "3"})
    # Nothing close: no suggestion.
    with pytest.raises(
        ConfigError, match=r"^unknown setting 'zebra\.stripes' in command-line overrides$"
    ):
        load_settings(None, {}, {"zebra.stripes": "3"})


def test_an_environment_variable_that_names_no_setting_is_a_warning() -> None:
    warned: list[str] = []
    env = {"STREAMGMM_DETECTR_N_REGIMES": "3", "STREAMGMM_UNRELATED_THING": "x", "HOME": "/"}
    s = load_settings(None, env, {}, warn=warned.append)
    assert "n_regimes" not in s.detector
    assert warned == [
        "environment variable STREAMGMM_DETECTR_N_REGIMES names no setting and is ignored; "
        "did you mean STREAMGMM_DETECTOR_N_REGIMES?",
        "environment variable STREAMGMM_UNRELATED_THING names no setting and is ignored",
    ]
    # Without a warn callback it is a Python warning, pointing at the caller.
    with pytest.warns(UserWarning, match="STREAMGMM_DETECTR_N_REGIMES") as record:
        load_settings(None, {"STREAMGMM_DETECTR_N_REGIMES": "3"}, {})
    assert record[0].filename == __file__


def test_unreadable_or_malformed_file_is_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load_settings(tmp_path / "missing.toml", {}, {})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot parse") as info:
        load_settings(write(tmp_path, "[kafka\nport = \n"), {}, {})
    assert "\n" not in str(info.value)


def test_secrets_are_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, "[security]\nsasl_plain_password = 918273645\n")
    with pytest.raises(ConfigError, match=r"security\.sasl_plain_password = '\*\*\*'") as info:
        load_settings(path, {}, {})
    assert "918273645" not in str(info.value)


def test_security_settings_pass_through_to_every_kafka_client(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[security]\n"
        'security_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_plain_username = "alice"\n'
        'ssl_cafile = "/etc/ssl/ca.pem"\n',
    )
    env = {
        "STREAMGMM_SECURITY_SASL_PLAIN_PASSWORD": " s3cret ",
        "STREAMGMM_KAFKA_API_VERSION": "3.7",
    }
    kwargs = kafka_client_kwargs(load_settings(path, env, {}))
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert kwargs["sasl_plain_username"] == "alice"
    assert kwargs["sasl_plain_password"] == " s3cret "  # verbatim: spaces may be part of it
    assert kwargs["ssl_cafile"] == "/etc/ssl/ca.pem"
    assert kwargs["api_version"] == (3, 7)
    assert kwargs["bootstrap_servers"] == ["localhost:9092"]
    assert "ssl_certfile" not in kwargs  # empty means "not set": kafka-python keeps its default
    accepted = (
        set(KafkaConsumer.DEFAULT_CONFIG)
        & set(KafkaProducer.DEFAULT_CONFIG)
        & set(KafkaAdminClient.DEFAULT_CONFIG)
    )
    assert set(kwargs) <= accepted
    auto = kafka_client_kwargs(load_settings(None, {"STREAMGMM_KAFKA_API_VERSION": "auto"}, {}))
    assert "api_version" not in auto


def test_cli_helpers_feed_the_top_layer(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_cli_overrides(parser)
    path = write(tmp_path, '[kafka]\ngroup_id = "file-group"\n')
    args = parser.parse_args(
        ["--config", str(path), "--bootstrap-servers", "h:9", "--metrics-port", "0"]
    )
    overrides = overrides_from_args(args)
    assert overrides == {"bootstrap_servers": "h:9", "metrics_port": "0"}
    s = load_settings(args.config, {"STREAMGMM_METRICS_PORT": "5555"}, overrides)
    assert s.bootstrap_servers == ("h:9",)
    assert s.metrics_port == 0
    assert s.group_id == "file-group"
    assert s.changelog_topic == "file-group.changelog"
    bad = parser.parse_args(["--metrics-port", "abc"])
    with pytest.raises(ConfigError, match=r"metrics\.port = 'abc' \(from command line\)"):
        load_settings(None, {}, overrides_from_args(bad))


def test_compose_file_sets_only_known_settings() -> None:
    import yaml

    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text("utf-8"))
    service = compose["services"]["streamgmm"]
    env = {k: str(v) for k, v in service["environment"].items()}
    assert env and all(k.startswith("STREAMGMM_") for k in env)
    s = load_settings(None, env, {"bootstrap_servers": "kafka:9092"})
    assert s.metrics_host == "0.0.0.0"
    assert (
        REPO / "deploy" / service["build"]["context"] / service["build"]["dockerfile"]
    ).is_file()


def _detector_parameters() -> set[str]:
    names: set[str] = set()
    for cls in (RegimeDetector, EventDetector):
        names |= set(inspect.signature(cls).parameters)
    # fields is [input] event_fields.
    return names - {"fields"}


def test_every_detector_parameter_is_a_documented_setting() -> None:
    specs = {spec.key: spec for spec in detector_specs()}
    assert set(specs) == _detector_parameters()
    for key, spec in specs.items():
        assert spec.doc and not spec.doc.startswith("See "), f"detector.{key} is undocumented"
        param = inspect.signature(RegimeDetector).parameters.get(key)
        if param is not None:
            default = param.default
            assert spec.parse(spec.default) == default


def test_every_detector_parameter_is_reachable_from_file_env_and_flag(tmp_path: Path) -> None:
    specs = detector_specs()
    # Each at its default, as text (environment), as TOML (file) and as --set flags.
    toml = "[detector]\n" + "".join(
        line + "\n"
        for line in default_config_text().split("[detector]\n", 1)[1].split("\n[")[0].splitlines()
        if line and not line.startswith("#")
    )
    env = {spec.env: _text(spec.default) for spec in specs}
    parser = argparse.ArgumentParser()
    add_cli_overrides(parser)
    flags = parser.parse_args([f"--set={spec.name}={_text(spec.default)}" for spec in specs])
    for settings in (
        load_settings(write(tmp_path, toml), {}, {}),
        load_settings(None, env, {}),
        load_settings(None, {}, overrides_from_args(flags)),
    ):
        assert set(settings.detector) == {spec.key for spec in specs}
        assert make_pipeline(settings).to_state() == make_pipeline(load_settings()).to_state()
    # A value other than the default reaches the detector by each route.
    by_file = load_settings(write(tmp_path, "[detector]\ndt_unit = 60.0\n"), {}, {})
    by_env = load_settings(None, {"STREAMGMM_DETECTOR_DT_UNIT": "60"}, {})
    by_flag = load_settings(
        None, {}, overrides_from_args(parser.parse_args(["--set", "detector.dt_unit=60"]))
    )
    for settings in (by_file, by_env, by_flag):
        assert make_pipeline(settings).dt_unit == 60.0  # type: ignore[attr-defined]
    event = load_settings(
        None,
        {"STREAMGMM_INPUT_TICK_KIND": "event", "STREAMGMM_INPUT_EVENT_FIELDS": "a,b"},
        {"detector.n_regimes": "3", "detector.dt_unit": "60"},  # dt_unit: market ticks only
    )
    detector = make_pipeline(event)
    assert isinstance(detector, EventDetector)
    assert (detector.n_regimes, detector.fields) == (3, ["a", "b"])


#: The environment of an event-tick service (the event model's settings apply to it).
EVENTS = {"STREAMGMM_INPUT_TICK_KIND": "event", "STREAMGMM_INPUT_EVENT_FIELDS": "a"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # A rule between two settings names the one at fault, with its source and value.
        (
            {"STREAMGMM_DETECTOR_N_REGIMES": "3"},
            "invalid setting detector.n_regimes = '3' (from env STREAMGMM_DETECTOR_N_REGIMES): "
            "n_regimes must be 2 for market ticks",
        ),
        # The event model's settings (event ticks only) are checked for event ticks.
        (
            {**EVENTS, "STREAMGMM_DETECTOR_PRIOR_LOW": "5"},
            "invalid setting detector.prior_high = 3.5 (from defaults): prior_high must be at "
            "least prior_low (5.0), got 3.5",
        ),
        (
            {**EVENTS, "STREAMGMM_DETECTOR_PRIOR_LOW": "5", "STREAMGMM_DETECTOR_PRIOR_HIGH": "4"},
            "invalid setting detector.prior_high = '4' (from env STREAMGMM_DETECTOR_PRIOR_HIGH)",
        ),
        (
            {**EVENTS, "STREAMGMM_DETECTOR_SELF_TRANSITION": "1"},
            "invalid setting detector.self_transition = '1' (from env "
            "STREAMGMM_DETECTOR_SELF_TRANSITION): self_transition must be below 1",
        ),
        # The event detector's fields are [input] event_fields: checked at start, too.
        (
            {
                "STREAMGMM_INPUT_TICK_KIND": "event",
                "STREAMGMM_INPUT_EVENT_FIELDS": ",".join(f"f{i}" for i in range(17)),
            },
            "invalid setting input.event_fields = 'f0,f1,",
        ),
    ],
)
def test_detector_rules_between_settings_name_the_setting(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, env, {})
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    # Alone, each value is fine: with n_regimes 1 a certain stay is allowed.
    if "STREAMGMM_DETECTOR_SELF_TRANSITION" in env:
        assert load_settings(None, {**env, "STREAMGMM_DETECTOR_N_REGIMES": "1"}, {}).detector == {
            "self_transition": 1.0,
            "n_regimes": 1,
        }


def test_detector_settings_are_read_and_checked_without_loading_the_model() -> None:
    """The declaration the [detector] section is read from imports neither numba nor river
    (the service's producer process and the configuration check import the settings)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from streamgmm.settings.layers import load_settings\n"
        "from streamgmm.settings.spec import ConfigError\n"
        "load_settings(None, {'STREAMGMM_DETECTOR_ALPHA': '0.9'}, {})\n"
        "try:\n"
        "    load_settings(None, {'STREAMGMM_DETECTOR_ALPHA': '0.5'}, {})\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
        "print(sorted(m for m in ('numba', 'river') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.splitlines()
    assert out[0].startswith("invalid setting detector.alpha = '0.5'") and "(0.5, 1.0]" in out[0]
    assert out[1] == "[]"


def _text(value: object) -> str:
    """A default as an environment variable or a --set flag writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_set_flag_and_detector_names_are_checked(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_cli_overrides(parser)
    with pytest.raises(ConfigError, match=r"SECTION\.KEY=VALUE"):
        overrides_from_args(parser.parse_args(["--set", "detector.dt_unit"]))
    with pytest.raises(ConfigError, match=r"unknown setting 'detector\.nope'"):
        load_settings(
            None, {}, overrides_from_args(parser.parse_args(["--set", "detector.nope=1"]))
        )
    with pytest.raises(ConfigError, match="STREAMGMM_DETECTOR_NOPE"):
        load_settings(None, {"STREAMGMM_DETECTOR_NOPE": "1"}, {})
    with pytest.raises(ConfigError, match=r"unknown setting detector\.nope in config"):
        load_settings(write(tmp_path, "[detector]\nnope = 1\n"), {}, {})


def test_a_settings_text_names_its_choices_from_the_parser() -> None:
    """Valid choices are written once, in the parser: the text names them by placeholder, and a
    text that leaves one out is refused when the setting is declared."""
    import dataclasses

    from streamgmm.settings.parsers import Choice
    from streamgmm.settings.spec import setting, specs_of

    with pytest.raises(TypeError, match=r"x\.y must name each of its choices"):
        setting("x", "y", Choice(("a", "b")), "a", "Either $a or b.")

    @dataclasses.dataclass(frozen=True)
    class Declared:
        y: str = setting("x", "y", Choice(("a", "b", "c")), "a", "$a first; $alternatives.")
        z: str = setting("x", "z", Choice(("P", "Q")), "P", "One of $choices.")

    y, z = specs_of(Declared)
    assert (y.attr, y.doc, y.choices) == ("y", '"a" first; a, b or c.', ("a", "b", "c"))
    assert (z.name, z.env, z.doc) == ("x.z", "STREAMGMM_X_Z", "One of P, Q.")


def test_security_settings_map_to_librdkafka_names(tmp_path: Path) -> None:
    """``client = "confluent"``: every ``[security]`` setting under librdkafka's name, and a
    configuration librdkafka accepts for its consumer, producer and admin client."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient

    from streamgmm.service.kafka import confluent

    path = write(
        tmp_path,
        "[kafka]\n"
        'client = "confluent"\n'
        "[security]\n"
        'security_protocol = "SASL_SSL"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\n'
        'sasl_plain_username = "alice"\n'
        'ssl_cafile = "/etc/ssl/ca.pem"\n'
        'ssl_certfile = "/etc/ssl/client.pem"\n'
        'ssl_keyfile = "/etc/ssl/client.key"\n'
        'ssl_crlfile = "/etc/ssl/crl.pem"\n'
        "ssl_check_hostname = false\n"
        'sasl_kerberos_service_name = "kafka"\n',
    )
    env = {
        "STREAMGMM_SECURITY_SASL_PLAIN_PASSWORD": " s3cret ",
        "STREAMGMM_SECURITY_SSL_PASSWORD": "k3y",
    }
    settings = load_settings(path, env, {})
    assert settings.client == "confluent"
    config = confluent.client_config(settings)
    assert {k: v for k, v in config.items() if k.startswith(("security", "sasl", "ssl"))} == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": " s3cret ",
        "sasl.kerberos.service.name": "kafka",
        "ssl.ca.location": "/etc/ssl/ca.pem",
        "ssl.certificate.location": "/etc/ssl/client.pem",
        "ssl.key.location": "/etc/ssl/client.key",
        "ssl.key.password": "k3y",
        "ssl.crl.location": "/etc/ssl/crl.pem",
        "ssl.endpoint.identification.algorithm": "none",
    }
    assert config["bootstrap.servers"] == "localhost:9092"
    # librdkafka checks every property name and value when a client is made (no connection
    # is needed for that); the certificate files need not exist until it connects.
    plain = {**confluent.client_config(load_settings(None, {}, {})), "group.id": "g"}
    for make in (confluent_kafka.Consumer, confluent_kafka.Producer, AdminClient):
        make(plain)
    with pytest.raises(confluent_kafka.KafkaException, match=r"ssl|SSL|certificate|No such file"):
        confluent_kafka.Producer(config)  # it does read the files: proof the names are real


def test_an_unknown_client_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"kafka\.client"):
        load_settings(None, {"STREAMGMM_KAFKA_CLIENT": "librdkafka"}, {})


def test_producer_process_auto_follows_the_client() -> None:
    from streamgmm.settings.service import use_producer_process

    def use(**env: str) -> bool:
        return use_producer_process(load_settings(None, env, {}))

    assert load_settings(None, {}, {}).producer_process is None  # "auto"
    assert use() is True  # kafka-python: the child process pays off
    assert use(STREAMGMM_KAFKA_CLIENT="confluent") is False
    assert use(STREAMGMM_KAFKA_CLIENT="confluent", STREAMGMM_OUTPUT_PRODUCER_PROCESS="true") is True
    assert use(STREAMGMM_OUTPUT_PRODUCER_PROCESS="false") is False
    with pytest.raises(ConfigError, match=r'output\.producer_process.*true, false or "auto"'):
        load_settings(None, {"STREAMGMM_OUTPUT_PRODUCER_PROCESS": "maybe"}, {})


def test_regime_names_default_to_the_number_of_regimes_and_can_be_given(tmp_path: Path) -> None:
    assert load_settings(None, {}, {}).regime_names == ("calm", "turbulent")
    three = load_settings(None, EVENTS, {"detector.n_regimes": 3})  # market ticks have two
    assert three.regime_names == ("calm", "normal", "turbulent")
    path = write(tmp_path, '[output]\nregime_names = ["quiet", "stressed"]\n')
    assert load_settings(path, {}, {}).regime_names == ("quiet", "stressed")
    env = {
        **EVENTS,
        "STREAMGMM_OUTPUT_REGIME_NAMES": " low , mid,high",
        "STREAMGMM_DETECTOR_N_REGIMES": "3",
    }
    assert load_settings(None, env, {}).regime_names == ("low", "mid", "high")


@pytest.mark.parametrize(
    "given,source,message",
    [
        (
            {"output.regime_names": "a,b,c"},
            "command line",
            r"^invalid setting output\.regime_names = 'a,b,c' \(from command line\): 3 names "
            r"for 2 regimes \(detector\.n_regimes\); give one name per regime$",
        ),
        (
            {"output.regime_names": ["calm", " "]},
            "command line",
            r"^invalid setting output\.regime_names = \['calm', ' '\] \(from command line\): "
            r"a name is blank$",
        ),
        (
            {"output.regime_names": "calm,calm"},
            "command line",
            r"^invalid setting output\.regime_names = 'calm,calm' .*'calm' is given twice",
        ),
    ],
)
def test_bad_regime_names_are_one_line_errors(given: dict, source: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(None, {}, given)
    assert "\n" not in str(info.value) and source in str(info.value)


def test_regime_names_must_match_n_regimes_from_a_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[input]\ntick_kind = "event"\nevent_fields = ["a"]\n'
        '[output]\nregime_names = ["a", "b"]\n[detector]\nn_regimes = 3\n',
    )
    with pytest.raises(ConfigError, match=rf"\(from config file {path}\): 2 names for 3 regimes"):
        load_settings(path, {}, {})
