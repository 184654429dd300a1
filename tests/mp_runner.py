# Runs one MicroPython test function: micropython mp_runner.py MODULE FUNCTION
# Exit 0 and "MP-PASS" on success; the MicroPython traceback and exit 1 on failure.
import sys

mod_name, fn_name = sys.argv[1], sys.argv[2]
try:
    mod = __import__(mod_name)
    getattr(mod, fn_name)()
except Exception as e:
    sys.print_exception(e)
    sys.exit(1)
print("MP-PASS")
