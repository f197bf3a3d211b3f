// edgefer_classify: classify one aligned face image with an edgefer artifact, from C++.
//
// Reads the same metadata the Python runtime reads (input size, colour order, mean/std, class
// names): from the model's rt_info (OpenVINO IR, and ONNX metadata_props, which OpenVINO's ONNX
// frontend exposes under rt_info["framework"]), or from a JSON file (--metadata, e.g. the
// metadata.json that `edgefer deepstream` writes, or a TensorRT engine's .json sidecar).
// Preprocessing is edgefer.preprocess.preprocess_image for resize="stretch": bilinear resize to
// the input size (skipped when the image already has it), channel order, x/255, (x - mean)/std.
//
// Usage: edgefer_classify MODEL IMAGE [--device CPU] [--metadata FILE.json]
// MODEL: .xml / .onnx (OpenVINO), or .engine / .plan when built with EDGEFER_WITH_TENSORRT.
// IMAGE: binary PPM (P6) / PGM (P5); any format OpenCV reads when built with OpenCV.
// Prints one JSON line: {"label": ..., "class_index": ..., "score": ..., "probs": [...]}.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <openvino/openvino.hpp>

#ifdef EDGEFER_WITH_OPENCV
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#endif

#ifdef EDGEFER_WITH_TENSORRT
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#endif

namespace {

struct Metadata {
    int input_size = 0;
    std::string color_order = "RGB";
    std::string resize = "stretch";
    float mean[3] = {0.f, 0.f, 0.f};
    float std[3] = {1.f, 1.f, 1.f};
    std::vector<std::string> class_names;
    std::string precision = "fp32";  // fp32 artifacts are executed in f32 (see infer_openvino)
    std::string layout = "NCHW";     // absent in records older than `edgefer import`: NCHW
    std::string outputs = "logits";  // "probabilities": an imported model with its own final Softmax
};

struct Image {  // interleaved 8-bit RGB, row-major
    int width = 0, height = 0;
    std::vector<uint8_t> rgb;
};

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, sep)) out.push_back(item);
    return out;
}

void set_triplet(float* dst, const std::vector<std::string>& parts, const char* what) {
    if (parts.size() != 3 && parts.size() != 1)
        throw std::runtime_error(std::string("metadata ") + what + " needs 1 or 3 values");
    for (int c = 0; c < 3; ++c) dst[c] = std::stof(parts[parts.size() == 1 ? 0 : c]);  // one value: every channel
}

void check_supported(const Metadata& m) {  // before the mean/std triplets: a grey model has one value
    if (m.layout != "NCHW" || (m.color_order != "RGB" && m.color_order != "BGR"))
        throw std::runtime_error("this example implements NCHW RGB/BGR models only (metadata says " + m.layout + " " +
                                 m.color_order + "); use the Python runtime for grey or NHWC models");
}

void validate(const Metadata& m) {
    if (m.input_size < 16) throw std::runtime_error("metadata has no valid input_size");
    if (m.class_names.empty()) throw std::runtime_error("metadata has no class names");
    if (m.resize != "stretch")
        throw std::runtime_error("this example implements resize=stretch only (metadata says " + m.resize + ")");
    check_supported(m);
}

// The flat keys edgefer writes next to the full JSON record (ModelMetadata.to_props()).
Metadata metadata_from_rt_info(const std::shared_ptr<ov::Model>& model) {
    auto get = [&](const std::string& key) -> std::string {
        if (!model->has_rt_info("framework", key))
            throw std::runtime_error("model has no rt_info framework/" + key + ": not exported by edgefer? "
                                     "(pass --metadata FILE.json)");
        return model->get_rt_info<std::string>("framework", key);
    };
    Metadata m;
    m.input_size = std::stoi(get("edgefer.input_size"));
    m.color_order = get("edgefer.color_order");
    m.resize = get("edgefer.resize");
    if (model->has_rt_info("framework", "edgefer.layout")) m.layout = get("edgefer.layout");
    if (model->has_rt_info("framework", "edgefer.outputs")) m.outputs = get("edgefer.outputs");
    check_supported(m);
    set_triplet(m.mean, split(get("edgefer.mean"), ','), "mean");
    set_triplet(m.std, split(get("edgefer.std"), ','), "std");
    m.class_names = split(get("edgefer.class_names"), ',');
    if (model->has_rt_info("framework", "edgefer.precision")) m.precision = get("edgefer.precision");
    return m;
}

// Minimal reader for the JSON edgefer writes: finds "key": value inside "preprocessing" and the
// top-level "class_names" list. Not a general JSON parser (no escapes in names, no nesting tricks).
std::string json_value(const std::string& text, const std::string& key, size_t from = 0) {
    const std::string pat = "\"" + key + "\"";
    size_t k = text.find(pat, from);
    if (k == std::string::npos) throw std::runtime_error("metadata JSON has no \"" + key + "\"");
    size_t p = text.find(':', k + pat.size()) + 1;
    while (p < text.size() && std::isspace(static_cast<unsigned char>(text[p]))) ++p;
    if (text[p] == '[') return text.substr(p + 1, text.find(']', p) - p - 1);
    if (text[p] == '"') return text.substr(p + 1, text.find('"', p + 1) - p - 1);
    size_t e = text.find_first_of(",}\n", p);
    return text.substr(p, e - p);
}

std::string trim_quotes(std::string s) {
    s.erase(0, s.find_first_not_of(" \t\n\r\""));
    s.erase(s.find_last_not_of(" \t\n\r\"") + 1);
    return s;
}

Metadata metadata_from_json(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot read metadata file " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    const size_t pp = text.find("\"preprocessing\"");
    if (pp == std::string::npos) throw std::runtime_error(path + " has no \"preprocessing\" record");
    Metadata m;
    m.input_size = std::stoi(json_value(text, "input_size", pp));
    m.color_order = json_value(text, "color_order", pp);
    m.resize = json_value(text, "resize", pp);
    if (text.find("\"layout\"", pp) != std::string::npos) m.layout = json_value(text, "layout", pp);
    if (text.find("\"outputs\"") != std::string::npos) m.outputs = json_value(text, "outputs");
    check_supported(m);
    set_triplet(m.mean, split(json_value(text, "mean", pp), ','), "mean");
    set_triplet(m.std, split(json_value(text, "std", pp), ','), "std");
    for (const auto& name : split(json_value(text, "class_names"), ',')) m.class_names.push_back(trim_quotes(name));
    if (text.find("\"precision\"") != std::string::npos) m.precision = json_value(text, "precision");
    return m;
}

// ---- image input ---------------------------------------------------------------------------
int read_int(std::istream& in) {  // PNM header field, skipping whitespace and # comments
    int c;
    while ((c = in.peek()) != EOF && (std::isspace(c) || c == '#')) {
        if (c == '#') in.ignore(1 << 20, '\n'); else in.get();
    }
    int v = 0;
    in >> v;
    return v;
}

Image read_pnm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open image " + path);
    std::string magic;
    in >> magic;
    if (magic != "P6" && magic != "P5") throw std::runtime_error(path + ": not a binary PPM/PGM (P6/P5)");
    Image img;
    img.width = read_int(in);
    img.height = read_int(in);
    const int maxval = read_int(in);
    in.get();
    if (img.width <= 0 || img.height <= 0 || maxval != 255) throw std::runtime_error(path + ": unsupported PNM");
    const int ch = magic == "P6" ? 3 : 1;
    std::vector<uint8_t> raw(static_cast<size_t>(img.width) * img.height * ch);
    in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
    if (!in) throw std::runtime_error(path + ": truncated image data");
    if (ch == 3) { img.rgb = std::move(raw); return img; }
    img.rgb.resize(raw.size() * 3);
    for (size_t i = 0; i < raw.size(); ++i) img.rgb[3 * i] = img.rgb[3 * i + 1] = img.rgb[3 * i + 2] = raw[i];
    return img;
}

Image read_image(const std::string& path) {
#ifdef EDGEFER_WITH_OPENCV
    cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
    if (bgr.empty()) throw std::runtime_error("OpenCV cannot read image " + path);
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    Image img;
    img.width = rgb.cols;
    img.height = rgb.rows;
    img.rgb.assign(rgb.data, rgb.data + rgb.total() * 3);
    return img;
#else
    return read_pnm(path);
#endif
}

// Bilinear resize with half-pixel centres (OpenCV INTER_LINEAR's geometry, float arithmetic).
Image resize_bilinear(const Image& src, int size) {
#ifdef EDGEFER_WITH_OPENCV
    cv::Mat in(src.height, src.width, CV_8UC3, const_cast<uint8_t*>(src.rgb.data())), out;
    cv::resize(in, out, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
    Image dst;
    dst.width = dst.height = size;
    dst.rgb.assign(out.data, out.data + out.total() * 3);
    return dst;
#else
    Image dst;
    dst.width = dst.height = size;
    dst.rgb.resize(static_cast<size_t>(size) * size * 3);
    const float sx = static_cast<float>(src.width) / size, sy = static_cast<float>(src.height) / size;
    for (int y = 0; y < size; ++y) {
        float fy = std::clamp((y + 0.5f) * sy - 0.5f, 0.f, static_cast<float>(src.height - 1));
        int y0 = static_cast<int>(fy), y1 = std::min(y0 + 1, src.height - 1);
        float wy = fy - y0;
        for (int x = 0; x < size; ++x) {
            float fx = std::clamp((x + 0.5f) * sx - 0.5f, 0.f, static_cast<float>(src.width - 1));
            int x0 = static_cast<int>(fx), x1 = std::min(x0 + 1, src.width - 1);
            float wx = fx - x0;
            for (int c = 0; c < 3; ++c) {
                auto at = [&](int yy, int xx) { return static_cast<float>(src.rgb[(yy * src.width + xx) * 3 + c]); };
                float v = (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1));
                dst.rgb[(y * size + x) * 3 + c] = static_cast<uint8_t>(std::lround(std::clamp(v, 0.f, 255.f)));
            }
        }
    }
    return dst;
#endif
}

// edgefer.preprocess.preprocess_image: NCHW float32, channels in the model's order.
std::vector<float> preprocess(const Image& input, const Metadata& m) {
    const int s = m.input_size;
    const Image img = (input.width == s && input.height == s) ? input : resize_bilinear(input, s);
    const bool bgr = m.color_order == "BGR";
    std::vector<float> chw(static_cast<size_t>(3) * s * s);
    for (int c = 0; c < 3; ++c) {
        const int src_c = bgr ? 2 - c : c;  // the image is RGB
        for (int i = 0; i < s * s; ++i)
            chw[static_cast<size_t>(c) * s * s + i] = (img.rgb[i * 3 + src_c] * (1.0f / 255.0f) - m.mean[c]) / m.std[c];
    }
    return chw;
}

std::vector<float> softmax(const std::vector<float>& z) {
    const float mx = *std::max_element(z.begin(), z.end());
    std::vector<float> p(z.size());
    double sum = 0;
    for (size_t i = 0; i < z.size(); ++i) sum += (p[i] = std::exp(z[i] - mx));
    for (auto& v : p) v = static_cast<float>(v / sum);
    return p;
}

std::vector<float> infer_openvino(const std::shared_ptr<ov::Model>& model, const std::string& device,
                                  std::vector<float>& chw, int size, const std::string& precision) {
    ov::Core core;
    ov::AnyMap config;
    // Like the Python backend: FP32 artifacts, and the floating-point parts of INT8 ones, run in f32.
    // OpenVINO would otherwise pick bf16 on CPUs with AVX512-BF16/AMX (and f16 on GPUs).
    if (precision == "fp32" || precision == "int8") config.emplace(ov::hint::inference_precision(ov::element::f32));
    ov::CompiledModel compiled = core.compile_model(model, device, config);
    ov::InferRequest req = compiled.create_infer_request();
    ov::Tensor input(ov::element::f32, ov::Shape{1, 3, static_cast<size_t>(size), static_cast<size_t>(size)},
                     chw.data());
    req.set_input_tensor(input);
    req.infer();
    const ov::Tensor out = req.get_output_tensor();
    const float* data = out.data<const float>();
    return std::vector<float>(data, data + out.get_size());
}

#ifdef EDGEFER_WITH_TENSORRT
class TrtLogger : public nvinfer1::ILogger {
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << msg << "\n";
    }
};

#define CUDA_CHECK(x) do { auto e_ = (x); if (e_ != cudaSuccess) throw std::runtime_error(cudaGetErrorString(e_)); } while (0)

// TensorRT >= 10 name-based I/O: one input (1,3,S,S), one output (1,C).
std::vector<float> infer_tensorrt(const std::string& engine_path, std::vector<float>& chw, int size, size_t classes) {
    std::ifstream in(engine_path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read engine " + engine_path);
    std::vector<char> blob((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    static TrtLogger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine) throw std::runtime_error(engine_path + ": cannot deserialize (built by another TensorRT or GPU?)");
    std::unique_ptr<nvinfer1::IExecutionContext> ctx(engine->createExecutionContext());
    std::string in_name, out_name;
    for (int i = 0; i < engine->getNbIOTensors(); ++i) {
        const char* n = engine->getIOTensorName(i);
        (engine->getTensorIOMode(n) == nvinfer1::TensorIOMode::kINPUT ? in_name : out_name) = n;
    }
    ctx->setInputShape(in_name.c_str(), nvinfer1::Dims4{1, 3, size, size});
    std::vector<float> logits(classes);
    void *d_in = nullptr, *d_out = nullptr;
    cudaStream_t stream;
    CUDA_CHECK(cudaStreamCreate(&stream));
    CUDA_CHECK(cudaMalloc(&d_in, chw.size() * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&d_out, classes * sizeof(float)));
    CUDA_CHECK(cudaMemcpyAsync(d_in, chw.data(), chw.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    ctx->setTensorAddress(in_name.c_str(), d_in);
    ctx->setTensorAddress(out_name.c_str(), d_out);
    if (!ctx->enqueueV3(stream)) throw std::runtime_error("TensorRT enqueueV3 failed");
    CUDA_CHECK(cudaMemcpyAsync(logits.data(), d_out, classes * sizeof(float), cudaMemcpyDeviceToHost, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaFree(d_in);
    cudaFree(d_out);
    cudaStreamDestroy(stream);
    return logits;
}
#endif

bool ends_with(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " MODEL IMAGE [--device CPU] [--metadata FILE.json]\n";
        return 2;
    }
    const std::string model_path = argv[1], image_path = argv[2];
    std::string device = "CPU", metadata_path;
    for (int i = 3; i + 1 < argc; i += 2) {
        const std::string flag = argv[i];
        if (flag == "--device") device = argv[i + 1];
        else if (flag == "--metadata") metadata_path = argv[i + 1];
        else { std::cerr << "unknown option " << flag << "\n"; return 2; }
    }
    try {
        const bool is_engine = ends_with(model_path, ".engine") || ends_with(model_path, ".plan");
        Metadata meta;
        std::vector<float> logits;
        if (is_engine) {
#ifdef EDGEFER_WITH_TENSORRT
            meta = metadata_from_json(metadata_path.empty() ? model_path + ".json" : metadata_path);
            validate(meta);
            std::vector<float> chw = preprocess(read_image(image_path), meta);
            logits = infer_tensorrt(model_path, chw, meta.input_size, meta.class_names.size());
#else
            throw std::runtime_error("built without TensorRT: reconfigure with -DEDGEFER_WITH_TENSORRT=ON on a "
                                     "machine with TensorRT and CUDA");
#endif
        } else {
            ov::Core core;
            std::shared_ptr<ov::Model> model = core.read_model(model_path);
            meta = metadata_path.empty() ? metadata_from_rt_info(model) : metadata_from_json(metadata_path);
            validate(meta);
            std::vector<float> chw = preprocess(read_image(image_path), meta);
            logits = infer_openvino(model, device, chw, meta.input_size, meta.precision);
        }
        if (logits.size() != meta.class_names.size())
            throw std::runtime_error("model returned " + std::to_string(logits.size()) + " scores for " +
                                     std::to_string(meta.class_names.size()) + " classes");
        // a model that outputs probabilities (metadata "outputs") is not softmaxed a second time
        const std::vector<float> probs = meta.outputs == "probabilities" ? logits : softmax(logits);
        const size_t k = std::max_element(probs.begin(), probs.end()) - probs.begin();
        std::cout << "{\"label\": \"" << meta.class_names[k] << "\", \"class_index\": " << k
                  << ", \"score\": " << probs[k] << ", \"probs\": [";
        std::cout.precision(8);
        for (size_t i = 0; i < probs.size(); ++i) std::cout << (i ? ", " : "") << probs[i];
        std::cout << "]}" << std::endl;
    } catch (const std::exception& e) {
        std::cerr << "error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
