//! Enhance a prompt, continue it and rewrite it, from the command line.
//!
//! ```text
//! cargo run -p fv-prompt --example enhance -- "a red fox in the snow"
//! CEREBRAS_API_KEY=... cargo run -p fv-prompt --example enhance -- --provider cerebras "a red fox"
//! ```
//!
//! Without `--provider` (or without its key, after the missing-key error) it runs offline
//! with the template provider. With a provider, the template provider is the last fallback.

use fv_prompt::{
    ProcessEnv, PromptConfig, PromptEnhancer, PromptSafetyFilter, ProviderKind, RewriteOptions,
    SafetyConfig,
};
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let provider = match args.iter().position(|a| a == "--provider") {
        Some(i) if i + 1 < args.len() => {
            let name = args.remove(i + 1);
            args.remove(i);
            Some(name)
        }
        _ => None,
    };
    let prompt = args.join(" ");
    let prompt = if prompt.trim().is_empty() {
        "a red fox in the snow".to_owned()
    } else {
        prompt
    };

    let enhancer = match provider.as_deref() {
        None => PromptEnhancer::offline(),
        Some(name) => {
            let kind = match name {
                "cerebras" => ProviderKind::Cerebras,
                "groq" => ProviderKind::Groq,
                other => return Err(format!("unknown provider {other:?}").into()),
            };
            let config = PromptConfig {
                enabled: true,
                provider: kind,
                model: std::env::var("FV_PROMPT_MODEL")
                    .unwrap_or_else(|_| PromptConfig::default().model),
                latency_budget_ms: 10_000,
                ..PromptConfig::default()
            };
            for warning in config.key_warnings(&ProcessEnv) {
                eprintln!("warning: {warning}");
            }
            PromptEnhancer::from_config(&config, Arc::new(ProcessEnv))?
        }
    };

    let safety = PromptSafetyFilter::from_config(&SafetyConfig {
        enabled: true,
        blocked_words: vec!["gore".into()],
        ..SafetyConfig::default()
    })?;
    let verdict = safety.check(&prompt).await;
    if safety.blocks(&verdict) {
        return Err(format!("prompt blocked: {}", verdict.reason).into());
    }

    let enhanced = enhancer.enhance(&prompt).await?;
    println!(
        "enhanced ({} / {}, {} ms, fallback {}):\n  {}",
        enhanced.provider,
        enhanced.model,
        enhanced.latency.as_millis(),
        enhanced.fallback_used,
        enhanced.text
    );
    let next = enhancer
        .auto_extend(std::slice::from_ref(&enhanced.text))
        .await?;
    println!("next ({}):\n  {}", next.provider, next.text);
    let rollout = enhancer
        .rewrite(&prompt, &RewriteOptions::with_count(6))
        .await?;
    println!("rewrite ({}):", rollout.output.provider);
    for (i, p) in rollout.prompts.iter().enumerate() {
        println!("  {}. {p}", i + 1);
    }
    Ok(())
}
