;; A component of the wrong world: a command (it exports `wasi:cli/run`, as
;; `cargo build` of a binary crate for `wasm32-wasip2` makes), not a weir
;; operator (which exports `weir:operator/guest@0.1.0`).
;;
;; The host must refuse it before running anything, in `weir run` and in
;; `weir operator inspect`, with one line that names the file, the interface
;; it lacks and what it exports instead.
(component
  (core module $m
    (func (export "run") (result i32) i32.const 0))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))
