"""Configurations read back: a YAML or JSON file given with `--config`, and the contents of a
run's config.json, at the values that reproduce the run when they come from an older version
(`train_config_from_dict`, `upgrade`), with every field's type checked; and what defines a run
(`run_identity`), for comparing two of them."""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from pathlib import Path
from typing import Literal

import yaml

from iapo.config import AgentConfig, TrainConfig, parse_count, parse_seeds, unique_keys
from iapo.errors import ConfigError
from iapo.kinds import KINDS


def _shown(value, limit: int = 60) -> str:
    """A value as JSON (or, for what JSON cannot say, such as a YAML date, Python) in at most
    `limit` characters, for one-line messages."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # (`<<: *defaults`: merged by PyYAML below)
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable):  # (an unhashable key is YAML's own error below)
                if key in seen:
                    raise ConfigError(f"gives the key {_shown(key)} twice (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Numbers with an exponent and no point (1e6, 3e-4) are floats, as in YAML 1.2 and JSON; PyYAML
# (YAML 1.1) would read them as text, and pass an environment option g: 1e1 on as "1e1".
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$"),
                                       list("-+0123456789"))


def _unique_keys(pairs: list) -> dict:
    """json's object_pairs_hook: a JSON object that gives one key twice is refused."""
    return unique_keys(pairs, lambda key: f"gives the key {_shown(key)} twice")


def parse_config_text(raw: bytes, json_file: bool) -> object:
    """A config file's contents: UTF-8 text of JSON or YAML (safe: no Python objects), no key
    given twice; a one-line ConfigError for anything else."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"is not UTF-8 text (byte {raw[exc.start]:#04x} at position {exc.start})") from None
    kind = "JSON" if json_file else "YAML"
    try:
        return json.loads(text, object_pairs_hook=_unique_keys) if json_file else yaml.load(text, _UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:  # what is wrong and where (PyYAML's first line says only what it was doing)
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"is not valid YAML: {exc.problem or exc.context or exc}{where}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"is not valid {kind}: {str(exc).splitlines()[0]}") from None


# Fields whose default changed: a config written before the field existed means the value
# below (the behaviour of the version that wrote it), so that its run resumes as it began.
LEGACY_AGENT_FIELDS = {"input_norm": "joint", "acting_pessimism": None}


def _conforms(value, hint) -> bool:
    """Whether a value read from JSON fits a field's type (Literal, unions, tuples of ints,
    int, float, bool, str, None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        return isinstance(value, (list, tuple)) and all(_conforms(v, args[0]) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _check_types(cls, data: dict) -> None:
    hints = typing.get_type_hints(cls)
    for name, value in list(data.items()):
        if hints.get(name) in (int, int | None, typing.Optional[int]) and isinstance(value, (float, str)) \
                and not isinstance(value, bool):
            try:  # a count written as 1e6 (YAML reads that as a string, JSON as a float)
                data[name] = value = parse_count(str(value))
            except ValueError:
                pass
        if name != "algo" and not _conforms(value, hints[name]):
            hint = hints[name]
            shown = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise ConfigError(f"config field {name} = {_shown(value)} is not of type {shown}")


def train_config_from_dict(data: dict, legacy: bool = True) -> TrainConfig:
    """Rebuild a TrainConfig from its `config.json` form (lists back to tuples); with `legacy`,
    the fields of `LEGACY_AGENT_FIELDS` that an older config lacks take their values from there,
    every other missing field its default. A value of the wrong type is a ConfigError naming the
    field."""
    if not isinstance(data, dict) or not isinstance(data.get("algo", {}), dict):
        raise ConfigError(f"a run configuration is a JSON object with an \"algo\" object, not {_shown(data)}")
    # What a run's "auto" settings resolved to (config.json's "resolved", `rundir`) is a record of
    # the machine it started on, not a setting.
    data = {k: v for k, v in data.items() if k != "resolved"}
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    agent_data = dict(data.get("algo", {}))
    if agent_data and legacy:  # (an empty algo dict is a partial config, not an older one)
        old = KINDS.get(agent_data.get("agent"))
        if "acting_pessimism" not in agent_data and old is not None and agent_data.get("pessimism") is None \
                and old.pessimism_before_0_2 != old.default_pessimism:
            agent_data["pessimism"] = old.pessimism_before_0_2  # its default beta before 0.2
        agent_data = {**LEGACY_AGENT_FIELDS, **agent_data}
    unknown = (set(agent_data) - agent_fields) | (set(data) - train_fields)
    if unknown:
        raise ConfigError(f"config has unknown fields: {', '.join(sorted(unknown))}")
    if isinstance(data.get("env_kwargs"), dict):  # a config file's mapping of options
        odd = [k for k in data["env_kwargs"] if not (isinstance(k, str) and k.isidentifier())]
        if odd:
            raise ConfigError(f"config field env_kwargs: {_shown(odd[0])} is not an option name")
        try:
            data["env_kwargs"] = [f"{k}={json.dumps(v)}" for k, v in data["env_kwargs"].items()]
        except (TypeError, ValueError):
            raise ConfigError(f"config field env_kwargs = {_shown(data['env_kwargs'])} holds a value that is not "
                              "JSON (numbers, text, true/false, null, lists, mappings)") from None
    elif "env_kwargs" in data and not (isinstance(data["env_kwargs"], (list, tuple))
                                       and all(isinstance(x, str) for x in data["env_kwargs"])):
        raise ConfigError(f"config field env_kwargs = {_shown(data['env_kwargs'])} is not a mapping of option names "
                          "to values (nor a list of KEY=VALUE texts)")
    _check_types(AgentConfig, agent_data)
    _check_types(TrainConfig, data)
    for name in ("hidden_sizes", "critic_hidden_sizes", "flow_hidden_sizes", "model_hidden_sizes"):
        if name in agent_data:
            agent_data[name] = tuple(agent_data[name])
    rest = {k: v for k, v in data.items() if k != "algo"}
    if rest.get("seeds") is not None:
        rest["seeds"] = tuple(rest["seeds"])
    if "env_kwargs" in rest:
        rest["env_kwargs"] = tuple(rest["env_kwargs"])
    return TrainConfig(algo=AgentConfig(**agent_data), **rest)


# Fields that say how a run is started or shown, not what it computes (not part of its identity).
PRESENTATION_FIELDS = ("run_dir", "progress", "quiet", "overwrite", "resume", "config", "log_every", "wandb_project")


def read_config_file(path: str | Path) -> TrainConfig:
    """The TrainConfig in a YAML or JSON file: every field of `TrainConfig`, the algorithm's under
    `algo` or beside the others (as flags are given); missing ones at their defaults. Top-level
    keys beginning with "x-" are ignored (YAML anchors live there). Unknown fields and values of the
    wrong type are one-line ConfigErrors."""
    if not str(path).strip():
        raise ConfigError("--config needs a file name, got an empty one")
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config {path}: {exc.strerror or exc}") from None
    try:
        data = parse_config_text(raw, path.suffix.lower() == ".json")
    except ConfigError as exc:
        raise ConfigError(f"--config {path} {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must hold a mapping of fields, not {type(data).__name__}")
    for mapping in (data, data.get("algo") if isinstance(data.get("algo"), dict) else {}):
        odd = [k for k in mapping if not isinstance(k, str)]
        if odd:
            raise ConfigError(f"--config {path}: the key {_shown(odd[0])} is not a field name")
    # Top-level keys that begin with "x-" are the file's own (as in Compose files): a place for
    # YAML anchors (`x-common: &common {...}`, merged with `<<: *common`), not fields.
    data = {k: v for k, v in data.items() if not k.startswith("x-")}
    if data.get("algo") is not None and not isinstance(data["algo"], dict):
        raise ConfigError(f"--config {path}: algo must be a mapping of the algorithm's fields, not "
                          f"{type(data['algo']).__name__} {_shown(data['algo'])}")
    # A run's own config.json (every field iapo has always written): read as that version ran it.
    written = isinstance(data.get("algo"), dict) and "agent" in data["algo"] and \
        {"env", "seed", "seeds", "total_steps", "run_dir", "random_steps", "eval_every"} <= set(data)
    if data.get("config") is not None and not written:  # (a run's config.json records the file it began from)
        raise ConfigError(f"--config {path}: a config file cannot name another (config: {_shown(data['config'])})")
    agent_fields = {f.name for f in dataclasses.fields(AgentConfig)}
    algo = dict(data.get("algo") or {})
    rest = {}
    for name, value in data.items():
        if name in agent_fields:
            if name in algo:
                raise ConfigError(f"--config {path}: {name} is given both under algo and beside it")
            algo[name] = value
        elif name != "algo":
            rest[name] = value
    if isinstance(rest.get("seeds"), str):  # ("0-4", as on the command line)
        rest["seeds"] = list(parse_seeds((rest["seeds"],)))
    try:
        config = train_config_from_dict({**rest, "algo": algo}, legacy=written)
        config.validate()  # (its values, at the defaults elsewhere: an error names the file it is in)
    except ConfigError as exc:
        raise ConfigError(f"--config {path}: {exc}") from None
    if written:  # (how that run was started, not what it computes: not carried over)
        config = dataclasses.replace(config, overwrite=False, resume=None)
    return dataclasses.replace(config, config=None)


def upgrade(data: dict) -> dict:
    """A config.json's contents as this version writes them: the fields that a config of an older
    version lacks at the values that reproduce its runs (`train_config_from_dict`), in JSON's
    types (lists, not tuples). A dict that is not a run configuration raises ConfigError."""
    try:
        return json.loads(json.dumps(dataclasses.asdict(train_config_from_dict(data))))
    except TypeError as exc:
        raise ConfigError(str(exc)) from None


def run_identity(config: dict) -> dict:
    """The fields of a config.json's contents that define a run (not where it lives or how it is
    shown), with the fields a config of an older version lacks at their defaults (which reproduce
    that version's runs): two runs compute the same thing exactly when these agree."""
    if "env" in config and "algo" in config:  # (not an empty or partial dict)
        try:
            config = upgrade(config)
        except ConfigError:  # unknown fields: compared as written
            pass
    config = json.loads(json.dumps(config))
    return {k: v for k, v in config.items() if k not in PRESENTATION_FIELDS}
