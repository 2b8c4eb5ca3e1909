from __future__ import annotations

import textwrap

import pytest
import typer

from pxp_bench.errors import PluginError, UnknownNameError
from pxp_bench.hookspecs import hookimpl
from pxp_bench.plugins import Plugins, Registry
from pxp_bench.specs import MethodSpec

EXTRA_METHOD = textwrap.dedent('''
    import pxp_bench

    def score(model, components, reference):
        return {}

    @pxp_bench.hookimpl
    def register_methods(register):
        register(pxp_bench.MethodSpec(name="extra", score=score, summary="a third-party method"))
''')


def test_builtins_register_through_the_same_hooks(plugins):
    assert plugins.methods.names() == ["ig", "lrp", "magnitude", "random", "smoothgrad", "taylor"]
    assert plugins.models.names("digits-*") == ["digits-resnet", "digits-vgg", "digits-vit"]
    assert plugins.datasets.names() == ["digits", "imagefolder", "imagenet"]
    assert {"resnet18", "vgg11_bn", "vit_b_16", "timm/resnet10t"} <= set(plugins.models.names())
    assert plugins.models.get("vit_b_16").family == "transformer" and plugins.models.get("resnet50").family == "cnn"
    assert {info.source for info in plugins.infos.values()} == {"builtin"}
    assert plugins.infos["pxp_bench.attribution.builtin"].registers["methods"] == [
        "random", "magnitude", "taylor", "ig", "smoothgrad", "lrp"]


def test_unknown_name_suggests_close_ones(plugins):
    with pytest.raises(UnknownNameError, match="unknown method 'taylr'.*Did you mean 'taylor'"):
        plugins.methods.get("taylr")
    with pytest.raises(UnknownNameError, match="pxp-bench list models"):
        plugins.models.get("resnet-9000")


def test_wildcards_are_case_insensitive():
    registry: Registry = Registry("method")
    for name in ("lrp", "LRP-eps", "taylor"):
        registry.add(MethodSpec(name=name, score=lambda: None, summary=""), "p")
    assert registry.names("lrp*") == ["LRP-eps", "lrp"]


def test_duplicate_name_is_refused_naming_both_plugins():
    class Clash:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="taylor", score=lambda: None, summary="again"))

    with pytest.raises(PluginError, match="'taylor' is registered twice.*pxp_bench.attribution.builtin.*Clash"):
        Plugins(load_external=False, extra=(Clash(),)).collect_all()


def test_a_raising_plugin_is_named():
    class Broken:
        @hookimpl
        def register_models(self, register):
            raise RuntimeError("boom")

    with pytest.raises(PluginError, match="plugin 'Broken'.*raised in register_models: RuntimeError: boom"):
        Plugins(load_external=False, extra=(Broken(),)).collect_all()


def test_a_spec_without_name_is_refused():
    class Nameless:
        @hookimpl
        def register_methods(self, register):
            register(object())

    with pytest.raises(PluginError, match="without a name"):
        Plugins(load_external=False, extra=(Nameless(),)).collect_all()


def test_entry_point_plugins_load_with_distribution_and_version(install_plugin):
    install_plugin("pxp-extra", EXTRA_METHOD)
    loaded = Plugins()
    assert "extra" in loaded.methods
    info = loaded.infos["pxp-extra"]
    assert (info.distribution, info.version, info.source) == ("pxp-extra", "1.2.3", "entry point")
    assert info.registers == {"methods": ["extra"]}


def test_load_env_selects_distributions(install_plugin, monkeypatch):
    install_plugin("pxp-extra", EXTRA_METHOD)
    monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", "")
    assert "extra" not in Plugins().methods
    monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", "PXP_Extra")  # names are normalised
    assert "extra" in Plugins().methods
    assert "extra" not in Plugins(load_external=False).methods


def test_an_entry_point_that_fails_to_import_is_named(install_plugin):
    install_plugin("pxp-broken", "raise ImportError('missing dependency foo')\n")
    with pytest.raises(PluginError, match="plugin 'pxp-broken' from pxp-broken 1.2.3 failed to load.*foo"):
        Plugins()


def test_register_commands_adds_a_subcommand(install_plugin):
    install_plugin("pxp-cmd", textwrap.dedent('''
        import pxp_bench

        @pxp_bench.hookimpl
        def register_commands(app):
            @app.command()
            def hello():
                print("hello from a plugin")
    '''))
    from typer.testing import CliRunner

    app = typer.Typer()

    @app.command()
    def noop() -> None:
        pass

    Plugins().call_each("register_commands", "app", lambda _: app)
    result = CliRunner().invoke(app, ["hello"])
    assert result.exit_code == 0 and "hello from a plugin" in result.output
