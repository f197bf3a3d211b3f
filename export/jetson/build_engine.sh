#!/usr/bin/env bash
# Build a TensorRT engine ON the Jetson (engines are tied to the GPU and TensorRT that built them).
#
#   ./build_engine.sh PROFILE.yaml MODEL.onnx [OUT_DIR]
#
# MODEL.onnx is what `edgefer export --target trt --onnx-only` wrote on the workstation: the FP32
# ONNX, the FP16 ONNX (<model>_fp16.onnx) or the Q/DQ INT8 ONNX (<model>_int8_qdq.onnx).
# With edgefer installed (venv made with --system-site-packages, so JetPack's tensorrt is seen)
# the engine is built by `edgefer export --target trt` and gets its JSON sidecar (TensorRT
# version, GPU, shapes, metadata) that the edgefer runtime checks before loading. Without
# Python, the equivalent trtexec command builds a bare engine (no sidecar): set USE_TRTEXEC=1 to
# force it. The timing cache (OUT_DIR/trt_timing.cache) makes rebuilds fast.
#
# The trtexec path follows the rules of edgefer's build plan (edgefer/export/tensorrt.py,
# plan_build): the profile's precision must match the ONNX kind. INT8 is built only from the Q/DQ
# ONNX, or from the FP32 ONNX with an existing calibration cache (CALIB_CACHE=file, TensorRT <= 10,
# written by a first `edgefer export --int8-mode entropy` build, with the key CALIB_CACHE.json that
# ties it to this ONNX: a cache of another ONNX is refused). A bare --int8 on an FP32 ONNX is
# refused: trtexec 8.5-10.x would build it with placeholder dynamic ranges (a wrong engine), 11.x
# has no --int8 and would build FP32 under an _int8 name. A mismatch exits 2 with a message.
# The TensorRT version comes from `trtexec --help` ("[TensorRT v8501]"); TRT_VERSION=10.3 overrides.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 PROFILE.yaml MODEL.onnx [OUT_DIR]" >&2
  exit 2
fi
PROFILE=$1
ONNX=$2
OUT=${3:-$(dirname "$ONNX")}
[[ -f "$PROFILE" ]] || { echo "profile $PROFILE not found" >&2; exit 2; }
[[ -f "$ONNX" ]] || { echo "ONNX model $ONNX not found" >&2; exit 2; }
mkdir -p "$OUT"

# Read one key of the flat profile YAML (no Python needed).
get() { sed -n "s/^$1:[[:space:]]*\([^#]*\).*/\1/p" "$PROFILE" | tr -d ' "' | head -n1; }
PRECISION=$(get precision); DYNAMIC=$(get dynamic); BATCH=$(get batch); MAX_BATCH=$(get max_batch)
OPT_BATCH=$(get opt_batch); WORKSPACE=$(get workspace_mib); DLA=$(get dla_core)
PRECISION=${PRECISION:-fp16}; BATCH=${BATCH:-1}; MAX_BATCH=${MAX_BATCH:-32}; WORKSPACE=${WORKSPACE:-1024}
[[ "$DLA" == "null" ]] && DLA=""

if [[ "${USE_TRTEXEC:-0}" != "1" ]] && command -v edgefer >/dev/null 2>&1 \
   && python3 -c "import tensorrt" >/dev/null 2>&1; then
  exec edgefer export --onnx "$ONNX" --target trt --profile "$PROFILE" --out "$OUT"
fi

TRTEXEC=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}
[[ -x "$TRTEXEC" ]] || { echo "neither edgefer (with tensorrt) nor trtexec found" >&2; exit 2; }
fail() { echo "error: $*" >&2; exit 2; }
# trtexec prints "[TensorRT v8501]" (8.x: M*1000+m*100+p) or "[TensorRT v100300]" (10.x+: M*10000+m*100+p).
if [[ -n "${TRT_VERSION:-}" ]]; then
  IFS=. read -r TRT_MAJOR TRT_MINOR TRT_PATCH _ <<< "$TRT_VERSION"
else
  CODE=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*TensorRT v\([0-9][0-9]*\).*/\1/p' | head -n1 || true)
  [[ -n "$CODE" ]] || fail "cannot tell the TensorRT version from '$TRTEXEC --help'; set TRT_VERSION (e.g. TRT_VERSION=10.3)"
  if (( ${#CODE} >= 6 )); then
    TRT_MAJOR=${CODE:0:${#CODE}-4}; TRT_MINOR=${CODE:${#CODE}-4:2}; TRT_PATCH=${CODE:${#CODE}-2:2}
  else
    TRT_MAJOR=${CODE:0:${#CODE}-3}; TRT_MINOR=${CODE:${#CODE}-3:1}; TRT_PATCH=${CODE:${#CODE}-2:2}
  fi
fi
TRT_MAJOR=$((10#${TRT_MAJOR:-0})); TRT_MINOR=$((10#${TRT_MINOR:-0})); TRT_PATCH=$((10#${TRT_PATCH:-0}))
TRT="$TRT_MAJOR.$TRT_MINOR.$TRT_PATCH"
(( TRT_MAJOR * 100 + TRT_MINOR >= 805 )) || fail "TensorRT $TRT is too old: edgefer builds with TensorRT >= 8.5 (JetPack 5.1 or newer)"

STEM=$(basename "$ONNX" .onnx)
ENGINE="$OUT/${STEM%_fp16}"
ENGINE="${ENGINE%_int8_qdq}_${PRECISION}${DLA:+_dla$DLA}.engine"
ARGS=(--onnx="$ONNX" --saveEngine="$ENGINE" --memPoolSize=workspace:"$WORKSPACE"
      --timingCacheFile="$OUT/trt_timing.cache")
# Shapes only for an ONNX with a dynamic batch, as trtexec_command does (edgefer/export/tensorrt.py):
# trtexec refuses --minShapes/--optShapes/--maxShapes for a model without dynamic inputs ("Static
# model does not take explicit shapes since the shape of inference tensors will be determined by
# the model itself": NVIDIA/TensorRT samples/common/sampleEngines.cpp, setupNetworkAndConfig, read
# in the 10.x source; issue 22 places it at 10.3.0 ~839-845 and 8.5.3 ~766), and
# `edgefer export --profile` with `dynamic: false` writes a static-batch
# ONNX. Whether the batch is dynamic: ONNX_DYNAMIC=1|0, else the edgefer metadata stored in the ONNX
# (its metadata_props JSON holds "dynamic_batch" and "batch"), else dynamic: shapes are passed, so a
# static foreign ONNX fails loudly in trtexec (set ONNX_DYNAMIC=0) instead of a dynamic one being
# built silently for batch 1 (trtexec's default for a dynamic input given no shapes).
ONNX_DYN=${ONNX_DYNAMIC:-}
ONNX_BATCH=""
if [[ -z "$ONNX_DYN" ]]; then
  META=$(LC_ALL=C grep -a -o -m1 '"batch": [0-9]*, "dynamic_batch": \(true\|false\)' "$ONNX" | head -n1 || true)
  if [[ -z "$META" ]]; then
    META=$(LC_ALL=C grep -a -o -m1 '"dynamic_batch": \(true\|false\)' "$ONNX" | head -n1 || true)
  fi
  case "$META" in
    *'"dynamic_batch": true') ONNX_DYN=1 ;;
    *'"dynamic_batch": false')
      ONNX_DYN=0
      ONNX_BATCH=$(sed -n 's/^"batch": \([0-9]*\),.*/\1/p' <<< "$META") ;;
  esac
fi
case "${ONNX_DYN:-}" in
  1|true) ONNX_DYN=1 ;;
  0|false) ONNX_DYN=0 ;;
  "") ONNX_DYN=1 ;;
  *) echo "error: ONNX_DYNAMIC must be 1 or 0, not '$ONNX_DYN'" >&2; exit 2 ;;
esac
if [[ "$ONNX_DYN" == "1" ]]; then
  # a dynamic-batch ONNX needs shapes, even for a static engine (min = opt = max = batch)
  if [[ "$DYNAMIC" == "true" ]]; then
    OPT=${OPT_BATCH:-$(( MAX_BATCH < 4 ? MAX_BATCH : 4 ))}
    ARGS+=(--minShapes=input:1x3xHxW --optShapes=input:${OPT}x3xHxW --maxShapes=input:${MAX_BATCH}x3xHxW)
  else
    ARGS+=(--minShapes=input:${BATCH}x3xHxW --optShapes=input:${BATCH}x3xHxW --maxShapes=input:${BATCH}x3xHxW)
  fi
else
  SEEN="${ONNX_BATCH:-its own}"
  if [[ "$DYNAMIC" == "true" ]]; then
    echo "error: $(basename "$ONNX") has a static batch of $SEEN but $PROFILE asks for a dynamic batch: export it with --dynamic (or use a profile with dynamic: false)" >&2
    exit 2
  fi
  if [[ -n "$ONNX_BATCH" && "$ONNX_BATCH" != "$BATCH" ]]; then
    echo "error: $(basename "$ONNX") has a static batch of $ONNX_BATCH but $PROFILE asks for batch $BATCH: export it with --batch $BATCH" >&2
    exit 2
  fi
fi
# Input size (trtexec path only; edgefer reads it from the ONNX metadata): IMG_SIZE, else the
# profile's img_size, else 112.
SIZE=${IMG_SIZE:-$(get img_size)}
[[ -z "$SIZE" || "$SIZE" == "null" ]] && SIZE=112
ARGS=("${ARGS[@]//HxW/${SIZE}x${SIZE}}")

# Precision, by the rules of plan_build. TensorRT 11 takes it from the network (no flags); 10.x
# builds the FP16/Q-DQ ONNX strongly typed (DLA: builder flags); 8.x uses the flags.
case "$ONNX" in *_fp16.onnx) KIND=fp16 ;; *qdq*.onnx) KIND=qdq ;; *) KIND=fp32 ;; esac
CALIB=${CALIB_CACHE:-}
[[ -z "$CALIB" || -f "$CALIB" ]] || fail "calibration cache $CALIB not found"
[[ "$PRECISION" =~ ^(fp32|fp16|int8)$ ]] || fail "unknown precision '$PRECISION' in $PROFILE (fp32, fp16 or int8)"
[[ -n "$DLA" && "$PRECISION" == "fp32" ]] && fail "DLA runs FP16 or INT8 networks only: set precision fp16 or int8 with dla_core"
if [[ -n "$DLA" ]] && (( TRT_MAJOR == 11 && TRT_MINOR * 100 + TRT_PATCH < 401 )); then
  fail "TensorRT $TRT has no DLA support on Jetson (DLA returned in TensorRT 11.4.1, JetPack 7.2.2+)"
fi
case "$PRECISION/$KIND" in
  fp32/fp32|fp16/fp16|int8/qdq) ;;
  fp16/fp32)
    (( TRT_MAJOR < 11 )) || fail "TensorRT $TRT takes FP16 from the network: build from the FP16 ONNX (<model>_fp16.onnx)" ;;
  int8/fp32)
    [[ -n "$CALIB" ]] || fail "INT8 needs the Q/DQ ONNX from \`edgefer quantize --target trt\` (<model>_int8_qdq.onnx), or on TensorRT <= 10 the FP32 ONNX with CALIB_CACHE=<calibration cache>; a bare --int8 would use placeholder ranges"
    (( TRT_MAJOR < 11 )) || fail "TensorRT $TRT removed implicit INT8 calibration: build from the Q/DQ ONNX" ;;
  *) WANT=${PRECISION^^}; [[ "$PRECISION" == "int8" ]] && WANT="Q/DQ"
     fail "a $PRECISION engine cannot be built from $(basename "$ONNX") (a $KIND ONNX): give the $WANT ONNX or change precision in $PROFILE" ;;
esac
[[ -n "$CALIB" && "$PRECISION/$KIND" != "int8/fp32" ]] && fail "CALIB_CACHE is used with the FP32 ONNX and precision int8 only"
# TensorRT matches a calibration cache to the network by tensor names only, so a cache from before
# retraining would give this engine the old scales silently. edgefer keys each cache to its ONNX
# (CALIB_CACHE.json, "onnx_sha256", edgefer/export/calibrator.py): use it only for that ONNX.
if [[ -n "$CALIB" ]]; then
  MAKE="make it with \`edgefer export --onnx $ONNX --target trt --precision int8 --int8-mode entropy --data DATA\`"
  [[ -f "$CALIB.json" ]] || fail "calibration cache $CALIB has no key $(basename "$CALIB").json, so it cannot be tied to $(basename "$ONNX"): $MAKE"
  WANT=$(sed -n 's/.*"onnx_sha256": *"\([0-9a-fA-F]*\)".*/\1/p' "$CALIB.json" | head -n1)
  HAVE=$(sha256sum "$ONNX" | cut -d' ' -f1)
  [[ "${WANT,,}" == "$HAVE" ]] || fail "calibration cache $CALIB was made for another ONNX (e.g. before retraining), not $(basename "$ONNX"): $MAKE"
fi
if (( TRT_MAJOR >= 11 )); then
  :
elif (( TRT_MAJOR >= 9 )) && [[ -z "$DLA" && -z "$CALIB" && "$KIND" != "fp32" ]]; then
  ARGS+=(--stronglyTyped)
else
  [[ "$PRECISION" == "fp16" ]] && ARGS+=(--fp16)
  [[ "$PRECISION" == "int8" ]] && ARGS+=(--int8)
  [[ "$PRECISION" == "int8" && -n "$DLA" ]] && ARGS+=(--fp16)
  [[ -n "$CALIB" ]] && ARGS+=(--calib="$CALIB")
fi
[[ -n "$DLA" ]] && ARGS+=(--useDLACore="$DLA" --allowGPUFallback)

# An edgefer sidecar beside the engine describes the engine built before (its TensorRT, GPU,
# shapes and sha256): remove it, so the rebuilt engine is never read with the old one's facts.
rm -f -- "$ENGINE.json"
echo "+ $TRTEXEC ${ARGS[*]}"
"$TRTEXEC" "${ARGS[@]}"
echo "built $ENGINE with trtexec (no edgefer sidecar: load it with trtexec or rebuild with edgefer for the runtime)"
