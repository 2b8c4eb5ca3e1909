from __future__ import annotations

import textwrap

import pytest
import typer

from pxp_bench.errors import PluginError, UnknownNameError
from pxp_bench.hookspecs import hookimpl
from pxp_bench.plugins import REGISTRIES, Plugins, Registry
from pxp_bench.specs import DatasetSpec, MethodSpec

EXTRA_METHOD = textwrap.dedent('''
    import pxp_bench

    def score(model, components, reference, context):
        return {}

    @pxp_bench.hookimpl
    def register_methods(register):
        register(pxp_bench.MethodSpec(name="extra", score=score, summary="a third-party method"))
''')


def test_builtins_register_through_the_same_hooks(plugins):
    assert plugins.methods.names() == ["ablation", "bn_scale", "conductance", "deeplift", "fpgm", "gradient_shap",
                                       "group_taylor", "hessian", "ig", "l1", "l2", "lamp", "lrp", "magnitude",
                                       "random", "smoothgrad", "taylor"]
    assert plugins.models.names("digits-*") == ["digits-resnet", "digits-vgg", "digits-vit"]
    assert plugins.datasets.names() == ["digits", "hf:", "imagefolder", "imagenet", "lm-corpus", "text"]
    assert plugins.datasets.owner("hf:Salesforce/wikitext") == plugins.datasets.owner("hf:") == "pxp_bench.lm.builtin"
    assert plugins.tasks.names() == ["classification", "language_modelling"]
    assert plugins.models.get("tiny-llama").family == "lm"
    assert plugins.models.get("hf:Qwen/Qwen2.5-0.5B") is plugins.models.get("hf:")  # one spec for every hf: name
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


def test_a_duplicate_name_fails_the_later_plugin_whole_and_the_rest_keeps_working():
    class Clash:
        @hookimpl
        def register_datasets(self, register):
            register(DatasetSpec(name="clash-data", load=lambda name, root: None, summary="fine on its own"))

        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="clash-ok", score=lambda: None, summary="registered before the clash"))
            register(MethodSpec(name="taylor", score=lambda: None, summary="again"))

    loaded = Plugins(load_external=False, extra=(Clash(),))
    assert "clash-data" in loaded.datasets  # filled before the clash was seen
    with pytest.warns(UserWarning, match="plugin 'Clash' .* failed and is not loaded: method 'taylor' is registered "
                                         "twice: by plugin 'pxp_bench.attribution.builtin' and by plugin 'Clash'"):
        methods = loaded.methods
    assert "taylor" in methods and loaded.methods.owner("taylor") == "pxp_bench.attribution.builtin"
    assert "clash-ok" not in methods and "clash-data" not in loaded.datasets  # withdrawn everywhere
    with pytest.raises(UnknownNameError, match="unknown method 'clash-ok'.*plugin 'Clash' .* failed"):
        methods.get("clash-ok")
    assert loaded.infos["Clash"].registers == {} and loaded.infos["Clash"].status.startswith("failed: method")


@pytest.mark.parametrize("hook, message", [
    ("raise RuntimeError('boom')", "register_methods raised RuntimeError: boom"),
    ("register(object())", "registered a method without a name"),
])
def test_a_plugin_failing_in_its_hook_is_isolated(hook, message):
    class Broken:
        @hookimpl
        def register_methods(self, register):
            exec(hook, {"register": register})

    loaded = Plugins(load_external=False, extra=(Broken(),))
    with pytest.warns(UserWarning, match=f"plugin 'Broken' .*failed and is not loaded: {message}"):
        assert "taylor" in loaded.methods
    assert loaded.infos["Broken"].status.startswith(f"failed: {message}")


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


def test_load_env_warns_about_names_that_provide_no_plugin(install_plugin, monkeypatch):
    install_plugin("pxp-extra", EXTRA_METHOD)
    # pluggy is installed but has no pxp_bench entry point; pxp-missing is not installed at all
    monkeypatch.setenv("PXP_BENCH_LOAD_PLUGINS", "PXP_Extra, pluggy, pxp-missing, pxp-bench")
    with pytest.warns(UserWarning, match="PXP_BENCH_LOAD_PLUGINS names") as caught:
        assert "extra" in Plugins().methods
    messages = [str(w.message) for w in caught if "PXP_BENCH_LOAD_PLUGINS names" in str(w.message)]
    assert [m.split("'")[1] for m in messages] == ["pluggy", "pxp-missing"]
    assert all("Install it, or correct or remove the name in PXP_BENCH_LOAD_PLUGINS" in m for m in messages)


def test_an_entry_point_that_fails_to_import_is_named_and_the_rest_keeps_working(install_plugin):
    install_plugin("pxp-broken", "raise ImportError('missing dependency foo')\n")
    install_plugin("pxp-extra", EXTRA_METHOD)
    loaded = Plugins()  # loading survives, so that --help and `pxp-bench plugins` still work
    assert loaded.infos["pxp-broken"].status == "failed: ImportError: missing dependency foo"
    with pytest.warns(UserWarning, match="plugin 'pxp-broken' from pxp-broken 1.2.3 failed and is not loaded: "
                      "ImportError: missing dependency foo. Fix or uninstall pxp-broken, or leave it "
                      "out of PXP_BENCH_LOAD_PLUGINS"):
        assert "extra" in loaded.methods and "taylor" in loaded.methods
    for registry in REGISTRIES:
        getattr(loaded, registry)  # warned once, not per registry
    loaded.collect_all()
    assert loaded.infos["pxp_bench.data.builtin"].registers["datasets"] == ["digits", "imagenet", "imagefolder"]


def test_a_misspelt_hook_fails_the_plugin_instead_of_registering_nothing(install_plugin):
    install_plugin("pxp-typo", EXTRA_METHOD.replace("def register_methods", "def register_method"))
    loaded = Plugins()
    assert loaded.infos["pxp-typo"].status.startswith("failed: unknown hook 'register_method' in plugin 'pxp-typo' (")
    assert not loaded.pm.has_plugin("pxp-typo")
    with pytest.warns(UserWarning, match="plugin 'pxp-typo' from pxp-typo 1.2.3 failed and is not loaded: unknown "
                      "hook 'register_method'.*hooks are .*register_methods.*Fix or uninstall pxp-typo"):
        assert "extra" not in loaded.methods


def test_a_hook_with_wrong_arguments_fails_the_plugin():
    class WrongArgument:
        @hookimpl
        def register_methods(self, reg):
            pass

    loaded = Plugins(load_external=False, extra=(WrongArgument(),))
    assert "'reg'" in loaded.infos["WrongArgument"].status and "\n" not in loaded.infos["WrongArgument"].status
    with pytest.warns(UserWarning, match="plugin 'WrongArgument'.*failed and is not loaded"):
        assert "digits-vgg" in loaded.models


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
