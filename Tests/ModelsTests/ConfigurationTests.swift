import Foundation
import Models
import Testing
import TestSupport

@Suite struct ConfigurationTests {
    @Test func hubLlavaConfigReadsRopeThetaAndImageTokenIndex() throws {
        guard case let .llava(configuration) = try ModelConfiguration.load(from: Fixtures.url("tiny-llava/config.json")) else {
            Issue.record("expected a LLaVA configuration"); return
        }
        #expect(configuration.imageTokenIndex == 32000)
        #expect(configuration.visionFeatureLayers == [-2])
        #expect(configuration.visionFeatureSelectStrategy == .default)
        #expect(configuration.projectorHiddenAct == .gelu)
        let text = configuration.textConfig
        #expect(text.vocabSize == 32064 && text.numHiddenLayers == 8 && text.numKeyValueHeads == 2)
        #expect(text.headDim == 8 && text.ropeTheta == 10000 && text.rmsNormEps == 1e-5)
        #expect(text.hiddenAct == .silu && !text.tieWordEmbeddings)
        #expect(configuration.visionConfig.imageSize == 336 && configuration.visionConfig.patchSize == 14)
        #expect(configuration.visionConfig.hiddenAct == .quickGelu)  // absent key: CLIP's default
    }

    @Test func savedLlavaConfigReadsRopeParameters() throws {
        guard case let .llava(configuration) = try ModelConfiguration.load(from: Fixtures.url("tiny-llava-saved/config.json")) else {
            Issue.record("expected a LLaVA configuration"); return
        }
        #expect(configuration.textConfig.ropeTheta == 10000 && configuration.textConfig.tieWordEmbeddings)
        let llama = try ModelConfiguration.load(from: Fixtures.url("tiny-llama/config.json"))
        #expect(llama.text.ropeTheta == 500000 && llama.text.attentionBias)
    }

    /// Absent keys take transformers' defaults: llava-1.5-7b-hf's config.json gives only a few.
    @Test func absentKeysTakeTransformersDefaults() throws {
        let json = #"""
        {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava",
         "text_config": {"model_type": "llama", "max_position_embeddings": 4096, "rms_norm_eps": 1e-05, "vocab_size": 32064},
         "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model",
                           "num_attention_heads": 16, "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768}}
        """#
        guard case let .llava(configuration) = try ModelConfiguration.parse(Data(json.utf8), file: "config.json") else {
            Issue.record("expected LLaVA"); return
        }
        let text = configuration.textConfig
        #expect(text.hiddenSize == 4096 && text.intermediateSize == 11008 && text.numHiddenLayers == 32)
        #expect(text.numAttentionHeads == 32 && text.numKeyValueHeads == 32 && text.headDim == 128)
        #expect(text.ropeTheta == 10000 && text.maxPositionEmbeddings == 4096 && text.eosTokenIds == [2] && text.bosTokenId == 1)
        #expect(configuration.imageTokenIndex == 32000 && configuration.imageSeqLength == 576)
        #expect(configuration.visionConfig.layerNormEps == 1e-5)

        let bare = try ModelConfiguration.parse(Data(#"{"model_type": "llava"}"#.utf8), file: "config.json")
        guard case let .llava(defaults) = bare else { Issue.record("expected LLaVA"); return }
        #expect(defaults.visionConfig == .llavaDefault)
    }

    /// Qwen2: `Qwen2Config`'s defaults for absent keys, biases on q/k/v only, and sliding-window
    /// attention refused by name.
    @Test func qwen2ConfigTakesItsOwnDefaultsAndBiases() throws {
        let saved = try ModelConfiguration.load(from: Fixtures.url("tiny-qwen2/config.json")).text
        #expect(saved.ropeTheta == 1_000_000 && saved.tieWordEmbeddings && saved.bosTokenId == nil && saved.eosTokenIds == [2])
        #expect(saved.attentionBias && !saved.attentionOutputBias)
        let bare = try ModelConfiguration.parse(Data(#"{"model_type": "qwen2", "rope_theta": 1000000.0}"#.utf8), file: "config.json").text
        #expect(bare.vocabSize == 151_936 && bare.intermediateSize == 22_016 && bare.maxPositionEmbeddings == 32_768)
        #expect(bare.rmsNormEps == 1e-6 && bare.bosTokenId == nil && bare.ropeTheta == 1_000_000)
        // LLaMA's defaults are untouched, and its attention_bias still covers the output projection.
        let llama = try ModelConfiguration.parse(Data(#"{"model_type": "llama", "attention_bias": true}"#.utf8), file: "config.json").text
        #expect(llama.vocabSize == 32000 && llama.bosTokenId == 1 && llama.attentionBias && llama.attentionOutputBias)
        func message(_ json: String) -> String {
            do {
                _ = try ModelConfiguration.parse(Data(json.utf8), file: "cfg.json")
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(message(#"{"model_type": "qwen2", "use_sliding_window": true}"#).contains("use_sliding_window"))
        #expect(message(#"{"model_type": "qwen2", "layer_types": ["full_attention", "sliding_attention"]}"#).contains("'sliding_attention'"))
        #expect(message(#"{"architectures": ["Qwen2ForCausalLM"], "num_attention_heads": 6, "num_key_value_heads": 4}"#).contains("num_key_value_heads"))
    }

    @Test func encodingRoundTrips() throws {
        guard case let .llava(configuration) = try ModelConfiguration.load(from: Fixtures.url("tiny-llava/config.json")) else { return }
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(configuration)) as! [String: Any]
        object["model_type"] = "llava"
        let again = try ModelConfiguration.parse(JSONSerialization.data(withJSONObject: object), file: "round-trip")
        #expect(again == .llava(configuration))
    }

    @Test func badConfigurationsNameTheProblem() throws {
        func message(_ json: String) -> String {
            do {
                _ = try ModelConfiguration.parse(Data(json.utf8), file: "cfg.json")
                return "no error"
            } catch { return "\(error)" }
        }
        #expect(message(#"{"model_type": "gpt2"}"#).contains("model_type 'gpt2' is not supported"))
        #expect(message(#"{"model_type": "llama", "num_attention_heads": 32, "num_key_value_heads": 5}"#).contains("num_key_value_heads"))
        #expect(message(#"{"model_type": "llama", "hidden_size": "big"}"#).contains("hidden_size"))
        #expect(message(#"{"model_type": "llama", "rope_scaling": {"rope_type": "llama3", "factor": 8}}"#).contains("llama3"))
        #expect(message(#"{"model_type": "llama", "hidden_act": "gelu"}"#).contains("hidden_act"))
        #expect(message("{oops").contains("not valid JSON"))
        #expect(message(#"{"model_type": "llava", "text_config": {"vocab_size": -3}}"#).contains("vocab_size"))
        #expect(throws: ConfigurationError.self) { try ModelConfiguration.load(from: URL(fileURLWithPath: "/nonexistent/config.json")) }
        // LLaVA: the parts must fit together, or the model would index outside its tensors.
        #expect(message(#"{"model_type": "llava", "vision_feature_layer": 30}"#).contains("vision_feature_layer"))
        #expect(message(#"{"model_type": "llava", "vision_feature_layer": -26}"#).contains("outside -25...24"))
        #expect(message(#"{"model_type": "llava", "vision_feature_select_strategy": "cls"}"#).contains("vision_feature_select_strategy"))
        #expect(message(#"{"model_type": "llava", "projector_hidden_act": "relu"}"#).contains("projector_hidden_act"))
        #expect(message(#"{"model_type": "llava", "vision_config": {"hidden_size": 100, "num_attention_heads": 16}}"#).contains("vision_config.num_attention_heads"))
        #expect(message(#"{"model_type": "llava", "vision_config": {"image_size": 100, "patch_size": 14}}"#).contains("vision_config.patch_size"))
        #expect(message(#"{"model_type": "llava", "vision_feature_layer": [-2, -5]}"#) == "no error")
    }

    /// No decoding failure of config.json shows a Swift type name or Foundation's internals.
    @Test func configurationErrorsAreInWords() throws {
        for json in [#"{"model_type": "llama", "hidden_size": "big"}"#, #"{"model_type": "llama", "hidden_act": "g\q"}"#,
                     #"{"model_type": "llama", "rope_scaling": [1]}"#, "{oops"] {
            do {
                _ = try ModelConfiguration.parse(Data(json.utf8), file: "cfg.json")
                Issue.record("accepted \(json)")
            } catch {
                for leak in ["Foundation", "JSONError", "Int", "Dictionary<", "Array<", "Domain"] {
                    #expect(!"\(error)".contains(leak), "\(error)")
                }
            }
        }
    }

}
