;; A core WebAssembly module, not a component: what a build for
;; `wasm32-unknown-unknown` or `wasm32-wasip1` produces without the component
;; step. It even exports functions named like the operator's.
;;
;; The host must refuse it before running anything, in `weir run` and in
;; `weir operator inspect`, with one line that names the file and says it is
;; a core module, not a component.
(module
  (memory (export "memory") 1)
  (func (export "describe") (result i32) i32.const 0)
  (func (export "process") (param i32 i32) (result i32) unreachable))
