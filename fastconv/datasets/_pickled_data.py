"""A reader for the data-only subset of Python's pickle format, without the pickle module.

fastconv never unpickles (a pickle can name any function to call). The CIFAR "python version"
batches are pickles, though: dicts of byte strings, lists of ints and uint8 NumPy arrays. This
module interprets the opcodes that build such values (protocols 0-5) and recognises a few
names a pickle may refer to, each mapped to a fixed data-building step here, never looked up:

- ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct`` with
  ``numpy.ndarray``: an array, whose state (shape, dtype, raw bytes) is read as data;
- ``numpy.core.numeric._frombuffer`` (protocol 5's way to write an array): the same, from
  (bytes, dtype, shape, order);
- ``numpy.dtype``: a numeric dtype from its type string ("u1", "<i8", ...; object dtypes refused);
- ``_codecs.encode``: the way Python 3 writes bytes into protocol-2 pickles (text -> latin-1 bytes).

Any other name, or an opcode outside the subset, raises ValueError naming it. Text (Python 2
``str``) is returned as bytes, like ``encoding="bytes"``.
"""
import struct

import numpy as np

_RECONSTRUCT = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}
_FROMBUFFER = {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")}


class _Name:
    def __init__(self, module, name):
        self.module, self.name = module, name


class _ArrayStub:
    """An ndarray between _reconstruct and its BUILD (which supplies shape, dtype and bytes)."""


class _Reader:
    def __init__(self, blob, origin):
        self.b, self.i, self.origin = memoryview(blob), 0, origin
        self.stack, self.marks, self.memo = [], [], {}

    def fail(self, what):
        raise ValueError(f"{self.origin}: {what}")

    def take(self, n):
        if self.i + n > len(self.b):
            self.fail("truncated data (not a complete CIFAR batch)")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def line(self):
        end = bytes(self.b[self.i:]).find(b"\n")
        if end < 0:
            self.fail("truncated data (not a complete CIFAR batch)")
        return bytes(self.take(end + 1)[:-1])

    def u(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def pop_mark(self):
        if not self.marks:
            self.fail("malformed data (MARK missing)")
        k = self.marks.pop()
        items = self.stack[k:]
        del self.stack[k:]  # in place: run() holds the same list
        return items

    def call(self, fn, args):
        if not isinstance(fn, _Name):
            self.fail("malformed data (a call on something that is not a name)")
        key = (fn.module, fn.name)
        if key in _RECONSTRUCT:
            if not args or not (isinstance(args[0], _Name) and (args[0].module, args[0].name) == ("numpy", "ndarray")):
                self.fail("refusing to rebuild anything but a plain numpy.ndarray")
            return _ArrayStub()
        if key in _FROMBUFFER:
            if len(args) != 4:
                self.fail("malformed _frombuffer call")
            return self.array(args[2], args[1], args[3] == "F", args[0])
        if key == ("numpy", "dtype"):
            spec = args[0].decode("ascii") if isinstance(args[0], bytes) else args[0]
            if not isinstance(spec, str):
                self.fail(f"unsupported dtype description {spec!r}")
            dt = np.dtype(spec)
            if dt.hasobject or dt.kind not in "biufc":
                self.fail(f"refusing a non-numeric dtype {dt} (arrays must hold plain numbers)")
            return dt
        if key == ("_codecs", "encode"):
            if len(args) != 2 or not isinstance(args[0], str) or args[1] not in ("latin1", "latin-1"):
                self.fail("unsupported _codecs.encode call")
            return args[0].encode("latin1")
        self.fail(f"refusing to load {fn.module}.{fn.name}: a CIFAR batch holds only dicts, lists, "
                  f"bytes and numeric arrays (the file is corrupt or not a CIFAR batch)")

    def array(self, shape, dtype, fortran, raw):
        if isinstance(raw, str):  # protocol 0/1 writers
            raw = raw.encode("latin1")
        if not isinstance(dtype, np.dtype) or not isinstance(raw, (bytes, bytearray)):
            self.fail("refusing an array whose data is not raw bytes of a numeric dtype")
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            self.fail(f"malformed array shape {shape!r}")
        count = int(np.prod(shape, dtype=np.int64))
        if count * dtype.itemsize != len(raw):
            self.fail(f"array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes, "
                      f"found {len(raw)}")
        return np.frombuffer(bytes(raw), dtype).reshape(shape, order="F" if fortran else "C").copy()

    def build(self, obj, state):
        if isinstance(obj, np.dtype):  # dtype state: (version, byte order, ...)
            if isinstance(state, tuple) and len(state) > 1 and state[1] in (">", b">"):
                return obj.newbyteorder(">")
            return obj
        if isinstance(obj, _ArrayStub):
            if not (isinstance(state, tuple) and len(state) == 5):
                self.fail("malformed array state")
            _, shape, dtype, fortran, raw = state
            return self.array(shape, dtype, fortran, raw)
        self.fail(f"refusing to set the state of a {type(obj).__name__}")

    def run(self):  # noqa: C901 - one branch per opcode reads best as one flat dispatch
        st = self.stack
        while True:
            op = bytes(self.take(1))
            if op == b"\x80":                      # PROTO
                if self.u("<B") > 5:
                    self.fail("pickle protocol newer than 5")
            elif op == b"\x95":                    # FRAME
                self.u("<Q")
            elif op == b".":                       # STOP
                if len(st) != 1:
                    self.fail("malformed data (stack at STOP)")
                return st[0]
            elif op == b"(":
                self.marks.append(len(st))
            elif op == b"}":
                st.append({})
            elif op == b"]":
                st.append([])
            elif op == b")":
                st.append(())
            elif op == b"d":
                items = self.pop_mark()
                st.append(dict(zip(items[::2], items[1::2])))
            elif op == b"l":
                st.append(self.pop_mark())
            elif op == b"t":
                st.append(tuple(self.pop_mark()))
            elif op in (b"\x85", b"\x86", b"\x87"):
                k = op[0] - 0x84
                items = st[-k:]
                del st[-k:]
                st.append(tuple(items))
            elif op == b"s":
                v, k = st.pop(), st.pop()
                st[-1][k] = v
            elif op == b"u":
                items = self.pop_mark()
                st[-1].update(zip(items[::2], items[1::2]))
            elif op == b"a":
                v = st.pop()
                st[-1].append(v)
            elif op == b"e":
                items = self.pop_mark()
                st[-1].extend(items)
            elif op == b"q":
                self.memo[self.u("<B")] = st[-1]
            elif op == b"r":
                self.memo[self.u("<I")] = st[-1]
            elif op == b"p":
                self.memo[int(self.line())] = st[-1]
            elif op == b"\x94":                    # MEMOIZE
                self.memo[len(self.memo)] = st[-1]
            elif op in (b"h", b"j", b"g"):
                key = self.u("<B") if op == b"h" else self.u("<I") if op == b"j" else int(self.line())
                if key not in self.memo:
                    self.fail("malformed data (unknown memo key)")
                st.append(self.memo[key])
            elif op == b"J":
                st.append(self.u("<i"))
            elif op == b"K":
                st.append(self.u("<B"))
            elif op == b"M":
                st.append(self.u("<H"))
            elif op == b"\x8a":                    # LONG1
                st.append(int.from_bytes(self.take(self.u("<B")), "little", signed=True))
            elif op in (b"I", b"L"):
                text = self.line().rstrip(b"L")
                st.append(True if text == b"01" else False if text == b"00" else int(text))
            elif op == b"G":
                st.append(self.u(">d"))
            elif op == b"N":
                st.append(None)
            elif op in (b"\x88", b"\x89"):
                st.append(op == b"\x88")
            elif op == b"U":                       # SHORT_BINSTRING (Python 2 str): bytes
                st.append(bytes(self.take(self.u("<B"))))
            elif op == b"T":                       # BINSTRING
                st.append(bytes(self.take(self.u("<i"))))
            elif op == b"C":
                st.append(bytes(self.take(self.u("<B"))))
            elif op == b"B":
                st.append(bytes(self.take(self.u("<I"))))
            elif op == b"\x8e":
                st.append(bytes(self.take(self.u("<Q"))))
            elif op == b"\x96":                    # BYTEARRAY8 (protocol 5 in-band buffers)
                st.append(bytearray(self.take(self.u("<Q"))))
            elif op in (b"\x97", b"\x98"):        # NEXT_BUFFER needs out-of-band data: refuse
                if op == b"\x97":
                    self.fail("out-of-band pickle buffers are not supported")
            elif op == b"V":                       # UNICODE (protocol 0): raw-unicode-escape text line
                st.append(self.line().decode("raw-unicode-escape"))
            elif op == b"F":                       # FLOAT (protocol 0)
                st.append(float(self.line()))
            elif op == b"X":
                st.append(str(self.take(self.u("<I")), "utf-8"))
            elif op == b"\x8c":
                st.append(str(self.take(self.u("<B")), "utf-8"))
            elif op == b"\x8d":
                st.append(str(self.take(self.u("<Q")), "utf-8"))
            elif op == b"c":                       # GLOBAL: module and name, never imported
                module = self.line().decode("ascii", "replace")
                st.append(_Name(module, self.line().decode("ascii", "replace")))
            elif op == b"\x93":                    # STACK_GLOBAL
                name, module = st.pop(), st.pop()
                st.append(_Name(str(module), str(name)))
            elif op == b"R":
                args, fn = st.pop(), st.pop()
                st.append(self.call(fn, args if isinstance(args, tuple) else (args,)))
            elif op == b"b":
                state = st.pop()
                st[-1] = self.build(st[-1], state)
            else:
                self.fail(f"unsupported pickle opcode {op!r} at byte {self.i - 1} (only plain data is read)")


def read(blob, origin="data"):
    """The value a data-only pickle holds (dicts, lists, tuples, bytes, str, numbers, numeric arrays)."""
    try:
        return _Reader(blob, origin).run()
    except (IndexError, KeyError, TypeError, AttributeError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"{origin}: malformed data ({type(e).__name__}: {e})") from None
