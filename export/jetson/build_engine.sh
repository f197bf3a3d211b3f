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
# trtexec prints "[TensorRT v8501]" (8.x: M*1000+m*100+p) or "[TensorRT v100300]" (10.x+: M*10000+...).
CODE=$("$TRTEXEC" --help 2>&1 | sed -n 's/.*TensorRT v\([0-9][0-9]*\).*/\1/p' | head -n1)
if [[ -z "$CODE" ]]; then TRT_MAJOR=10
elif (( ${#CODE} >= 6 )); then TRT_MAJOR=${CODE:0:${#CODE}-4}
else TRT_MAJOR=${CODE:0:${#CODE}-3}; fi

STEM=$(basename "$ONNX" .onnx)
ENGINE="$OUT/${STEM%_fp16}"
ENGINE="${ENGINE%_int8_qdq}_${PRECISION}${DLA:+_dla$DLA}.engine"
ARGS=(--onnx="$ONNX" --saveEngine="$ENGINE" --memPoolSize=workspace:"$WORKSPACE"
      --timingCacheFile="$OUT/trt_timing.cache")
# A dynamic-batch ONNX needs shapes; a static profile uses min = opt = max = batch.
if [[ "$DYNAMIC" == "true" ]]; then
  OPT=${OPT_BATCH:-$(( MAX_BATCH < 4 ? MAX_BATCH : 4 ))}
  ARGS+=(--minShapes=input:1x3xHxW --optShapes=input:${OPT}x3xHxW --maxShapes=input:${MAX_BATCH}x3xHxW)
else
  ARGS+=(--minShapes=input:${BATCH}x3xHxW --optShapes=input:${BATCH}x3xHxW --maxShapes=input:${BATCH}x3xHxW)
fi
# Input size (trtexec path only; edgefer reads it from the ONNX metadata): IMG_SIZE, else the
# profile's img_size, else 112.
SIZE=${IMG_SIZE:-$(get img_size)}
[[ -z "$SIZE" || "$SIZE" == "null" ]] && SIZE=112
ARGS=("${ARGS[@]//HxW/${SIZE}x${SIZE}}")

# Precision: TensorRT 11 takes it from the network; 10.x builds FP16/Q-DQ ONNX strongly typed
# (DLA: builder flags); 8.x uses the flags.
case "$ONNX" in *_fp16.onnx) KIND=fp16 ;; *qdq*.onnx) KIND=qdq ;; *) KIND=fp32 ;; esac
if (( TRT_MAJOR >= 11 )); then
  :
elif (( TRT_MAJOR >= 10 )) && [[ -z "$DLA" && "$KIND" != "fp32" ]]; then
  ARGS+=(--stronglyTyped)
else
  [[ "$PRECISION" == "fp16" ]] && ARGS+=(--fp16)
  [[ "$PRECISION" == "int8" ]] && ARGS+=(--int8)
  [[ "$PRECISION" == "int8" && -n "$DLA" ]] && ARGS+=(--fp16)
fi
[[ -n "$DLA" ]] && ARGS+=(--useDLACore="$DLA" --allowGPUFallback)

echo "+ $TRTEXEC ${ARGS[*]}"
"$TRTEXEC" "${ARGS[@]}"
echo "built $ENGINE with trtexec (no edgefer sidecar: load it with trtexec or rebuild with edgefer for the runtime)"
