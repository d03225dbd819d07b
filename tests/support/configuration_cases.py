"""Orthanc configuration texts and what Orthanc 1.10.1 does with them: the contract of configfile.read.

Each case is ``(files, accepted Name or None when Orthanc refuses)``. ``files`` maps a file name to its
text; BASE stands for the options a test needs to start Orthanc (a JSON fragment without braces). One
file is given to Orthanc as a file, several as their folder. ``H2_SET`` is set to "val" and ``H2_UNSET``
is unset in the environment of both readers. tests/e2e/test_e2e_configfile.py checks every case against a
real Orthanc; tests/unit/test_configfile.py against configfile.read.
"""

ENVIRONMENT = {"H2_SET": "val"}

CASES = {
    "comments, never inside strings": ({"a.json": '{ BASE, // a comment\n /* another */ "Name": "http://a//b /* no */" }'},
                                       "http://a//b /* no */"),
    "a // comment ended by a carriage return": ({"a.json": '{ BASE, // c\r "Name": "cr" }'}, "cr"),
    "trailing comma in an object": ({"a.json": '{ BASE, "Name": "tc", "X": {"a": 1, /* c */ }, }'}, "tc"),
    "trailing comma in an array": ({"a.json": '{ BASE, "Name": "ta", "X": [1, 2,] }'}, "ta"),
    "text after the top-level object": ({"a.json": '{ BASE, "Name": "ga" } xyz {"Name": "second"} /* open'}, "ga"),
    "a key twice in one file: the last wins": ({"a.json": '{ BASE, "Name": "first", "Name": "last" }'}, "last"),
    "environment variables": ({"a.json": '{ BASE, "Name": "${H2_SET}-${H2_UNSET}-${H2_UNSET:-d}-${H2_UNSET:-"q q"}-'
                                         "${H2_UNSET:-'s'}-${H2_UNSET:-}\" }"}, "val--d-q q-s-"),
    "raw control characters in a string": ({"a.json": '{ BASE, "Name": "a\tb\nc" }'}, "a\tb\nc"),
    "a byte-order mark": ({"a.json": '\ufeff{ BASE, "Name": "bom" }'}, "bom"),
    "lenient numbers": ({"a.json": '{ BASE, "Name": "n", "X": [01, 1., +1, -0, 1e3] }'}, "n"),
    "comments around values and commas": ({"a.json": '{ BASE, "Name": /* c */ "cv" /* c */ , "X": [1 /* c */ ] }'},
                                          "cv"),
    "a comment between a name and its colon": ({"a.json": '{ BASE, "Name" /* c */ : "x" }'}, None),
    "a comment in an empty array": ({"a.json": '{ BASE, "Name": "x", "X": [ /* c */ ] }'}, None),
    "a comment after a trailing comma in an array": ({"a.json": '{ BASE, "Name": "x", "X": [1, /* c */ ] }'}, None),
    "a lone comma in an object": ({"a.json": '{ BASE, "Name": "x", "X": {,} }'}, None),
    "a lone comma in an array": ({"a.json": '{ BASE, "Name": "x", "X": [,] }'}, None),
    "two commas": ({"a.json": '{ BASE,, "Name": "x" }'}, None),
    "a # comment": ({"a.json": '{ BASE, # no\n "Name": "x" }'}, None),
    "single quotes": ({"a.json": "{ BASE, 'Name': 'x' }"}, None),
    "NaN": ({"a.json": '{ BASE, "Name": "x", "X": NaN }'}, None),
    "an unclosed comment inside the object": ({"a.json": '{ BASE, "Name": "x" /* open'}, None),
    "an array at the top level": ({"a.json": "[1]"}, None),
    "an empty file": ({"a.json": ""}, None),
    "${} names no variable": ({"a.json": '{ BASE, "Name": "x${}y" }'}, None),
    "a folder: *.json in any case, other files and folders ignored": (
        {"a.json": "{ BASE }", "b.JSON": '{"Name": "upper"}', "c.txt": "junk", "d.json.bak": "junk", "sub.json/": ""},
        "upper"),
    "a folder: a file named .json is read": ({"a.json": "{ BASE }", ".json": '{"Name": "hidden"}'}, "hidden"),
    "a folder: an empty object first": ({"0.json": "{}", "a.json": '{ BASE, "Name": "eo" }'}, "eo"),
    "a folder: one key in two files": ({"a.json": '{ BASE, "Name": "x" }', "b.json": '{"Name": "y"}'}, None),
    "a folder: one section in two files, not merged": (
        {"a.json": '{ BASE, "Name": "x", "DicomWeb": {"Enable": false} }', "b.json": '{"DicomWeb": {"Root": "/x/"}}'},
        None),
}


def write(folder, files: dict, base: str) -> str:
    """Writes the files into ``folder`` (a pathlib.Path); returns what to give Orthanc (file or folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if name.endswith("/"):
            (folder / name.rstrip("/")).mkdir()
        else:
            (folder / name).write_text(text.replace("BASE", base), encoding="utf-8")
    return str(folder / next(iter(files))) if len(files) == 1 else str(folder)
