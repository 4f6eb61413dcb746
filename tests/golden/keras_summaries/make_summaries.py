"""Record real Keras 3 summaries of the course models (tests/keras_course_models.py).

Run where Keras 3 is installed (not needed by the tests, which only read the .txt files):

    COLUMNS=200 KERAS_BACKEND=tensorflow python tests/golden/keras_summaries/make_summaries.py

COLUMNS=200 keeps Keras's own 88/108-character tables from being narrowed to the terminal;
each model is built after keras.utils.clear_session(), so the auto-generated names start
afresh as they do in a new script. Each file holds exactly what summary(print_fn=...) prints.
"""
import os
import sys

os.environ.setdefault("COLUMNS", "200")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from keras_course_models import SUMMARY_CASES, SUMMARY_OPTIONS  # noqa: E402


def main():
    keras.utils.set_random_seed(0)
    cases = {name: (name, {}) for name in SUMMARY_CASES}
    cases.update(SUMMARY_OPTIONS)
    for name, (case, options) in cases.items():
        keras.utils.clear_session()
        model = SUMMARY_CASES[case](keras)
        captured = []
        model.summary(print_fn=captured.append, **options)
        with open(os.path.join(HERE, f"{name}.txt"), "w", encoding="utf-8") as f:
            f.write(f"# keras {keras.__version__}, backend {keras.backend.backend()}\n")
            f.write("".join(captured))
        print(name)


if __name__ == "__main__":
    main()
