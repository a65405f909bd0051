// An empty Python module `igm_fast._C`: importing it loads this library, whose static
// TORCH_LIBRARY registrations define torch.ops.igm_fast.*. No pybind11, so the library uses
// only the limited Python API and one build serves every CPython >= 3.10 (pytorch/extension-cpp).
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT,
      "_C",  // name
      NULL,  // documentation
      -1,    // no per-interpreter state
      NULL,  // no methods: the ops live in torch.ops.igm_fast
  };
  return PyModule_Create(&module_def);
}
}
