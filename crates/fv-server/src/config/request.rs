//! `default_request:` — FastVideo's `GenerationRequest`, the values every segment starts from.
//! This server reads the negative prompt and the sampling size, frame rate, frame count,
//! steps, guidance and seed; the rest is accepted so FastVideo's configs load.

use super::Mapping;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A string or a list of strings (`str | list[str]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrList {
    /// One string.
    One(String),
    /// Several strings.
    Many(Vec<String>),
}

/// `default_request:` (FastVideo's `GenerationRequest`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultRequest {
    /// Prompt (not used: prompts come from the client).
    #[schemars(extend("x-unused" = true))]
    pub prompt: Option<StringOrList>,
    /// Negative prompt of a segment whose request sends none (or an empty one).
    pub negative_prompt: Option<String>,
    /// Input files and conditioning.
    #[schemars(extend("x-unused" = true))]
    pub inputs: InputsSection,
    /// Sampling parameters.
    pub sampling: Sampling,
    /// Runtime switches.
    #[schemars(extend("x-unused" = true))]
    pub runtime: RuntimeSection,
    /// Output handling.
    #[schemars(extend("x-unused" = true))]
    pub output: OutputSection,
    /// Per-stage overrides.
    #[schemars(extend("x-unused" = true))]
    pub stage_overrides: Mapping,
    /// Continuation state.
    #[schemars(extend("x-unused" = true))]
    pub state: Option<RequestState>,
    /// Multi-stage plan.
    #[schemars(extend("x-unused" = true))]
    pub plan: Option<GenerationPlan>,
    /// Extension data.
    #[schemars(extend("x-unused" = true))]
    pub extensions: Mapping,
}

/// `default_request.inputs:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InputsSection {
    /// Prompt file.
    pub prompt_path: Option<String>,
    /// Image path(s).
    pub image_path: Option<StringOrList>,
    /// Video path(s).
    pub video_path: Option<StringOrList>,
    /// In-memory image (any value).
    pub pil_image: Option<Value>,
    /// Pose input.
    pub pose: Option<String>,
    /// Mouse conditioning (any value).
    pub mouse_cond: Option<Value>,
    /// Keyboard conditioning (any value).
    pub keyboard_cond: Option<Value>,
    /// Grid sizes (any value).
    pub grid_sizes: Option<Value>,
    /// Camera embedding (any value).
    pub c2ws_plucker_emb: Option<Value>,
    /// Action file.
    pub action_path: Option<String>,
    /// Refine source.
    pub refine_from: Option<String>,
    /// Stage-1 video (any value).
    pub stage1_video: Option<Value>,
}

/// `default_request.sampling:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    /// Videos per prompt (not used: one per segment).
    #[schemars(extend("x-unused" = true))]
    pub num_videos_per_prompt: i64,
    /// Seed of a segment whose request sends none; used unchanged.
    pub seed: i64,
    /// Text-encoder sequence cap.
    #[schemars(extend("x-unused" = true))]
    pub max_sequence_length: Option<i64>,
    /// Frames per segment.
    #[schemars(range(min = 1, max = 1000))]
    pub num_frames: u32,
    /// Frame height in pixels; even for H.264 4:2:0.
    #[schemars(range(min = 16, max = 4096), extend("multipleOf" = 2))]
    pub height: u32,
    /// Frame width in pixels; even for H.264 4:2:0.
    #[schemars(range(min = 16, max = 4096), extend("multipleOf" = 2))]
    pub width: u32,
    /// Super-resolution height.
    #[schemars(extend("x-unused" = true))]
    pub height_sr: i64,
    /// Super-resolution width.
    #[schemars(extend("x-unused" = true))]
    pub width_sr: i64,
    /// Frames per second of the stream.
    #[schemars(range(min = 1, max = 240))]
    pub fps: u32,
    /// Denoising steps of a segment whose request sends none (clients may ask for 1..=1000).
    #[schemars(range(min = 1, max = 1000))]
    pub num_inference_steps: u32,
    /// Super-resolution steps.
    #[schemars(extend("x-unused" = true))]
    pub num_inference_steps_sr: i64,
    /// Guidance scale of a segment whose request sends none (clients may ask for 0..=100).
    #[schemars(range(min = 0.0))]
    pub guidance_scale: f64,
    /// Second guidance scale.
    #[schemars(extend("x-unused" = true))]
    pub guidance_scale_2: Option<f64>,
    /// CFG normalization.
    #[schemars(extend("x-unused" = true))]
    pub cfg_normalization: bool,
    /// CFG truncation.
    #[schemars(extend("x-unused" = true))]
    pub cfg_truncation: Option<f64>,
    /// Guidance rescale.
    #[schemars(extend("x-unused" = true))]
    pub guidance_rescale: f64,
    /// True CFG scale.
    #[schemars(extend("x-unused" = true))]
    pub true_cfg_scale: Option<f64>,
    /// Embedded guidance.
    #[schemars(extend("x-unused" = true))]
    pub use_embedded_guidance: Option<bool>,
    /// Boundary ratio.
    #[schemars(extend("x-unused" = true))]
    pub boundary_ratio: Option<f64>,
    /// Explicit sigma schedule.
    #[schemars(extend("x-unused" = true))]
    pub sigmas: Option<Vec<f64>>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            num_videos_per_prompt: 1,
            seed: 1024,
            max_sequence_length: None,
            num_frames: 125,
            height: 720,
            width: 1280,
            height_sr: 1072,
            width_sr: 1920,
            fps: 24,
            num_inference_steps: 50,
            num_inference_steps_sr: 50,
            guidance_scale: 1.0,
            guidance_scale_2: None,
            cfg_normalization: false,
            cfg_truncation: Some(1.0),
            guidance_rescale: 0.0,
            true_cfg_scale: None,
            use_embedded_guidance: None,
            boundary_ratio: None,
            sigmas: None,
        }
    }
}

/// `default_request.runtime:`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSection {
    /// TeaCache.
    pub enable_teacache: bool,
    /// Return trajectory latents.
    pub return_trajectory_latents: bool,
    /// Return decoded trajectory.
    pub return_trajectory_decoded: bool,
}

/// `default_request.output:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OutputSection {
    /// Output directory.
    pub output_path: String,
    /// Output file name.
    pub output_video_name: Option<String>,
    /// Save the video to disk.
    pub save_video: bool,
    /// Return frames.
    pub return_frames: bool,
    /// Return continuation state.
    pub return_state: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            output_path: "outputs/".to_owned(),
            output_video_name: None,
            save_video: true,
            return_frames: true,
            return_state: false,
        }
    }
}

/// `default_request.state:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestState {
    /// State schema tag.
    pub kind: String,
    /// State data.
    pub payload: Mapping,
}

/// `default_request.plan:`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerationPlan {
    /// Stages in order.
    pub stages: Vec<PlannedStage>,
    /// Stage whose output is returned.
    #[serde(default)]
    pub final_stage: Option<String>,
}

/// One entry of `default_request.plan.stages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlannedStage {
    /// Stage name.
    pub name: String,
    /// Stage kind.
    pub kind: String,
    /// Input stage.
    #[serde(default)]
    pub source: Option<String>,
    /// Stage overrides.
    #[serde(default)]
    pub overrides: Mapping,
}
