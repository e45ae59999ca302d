//! Generators against a real OpenAI-compatible server: the llama.cpp server of the
//! `xllamacpp` wheel serving SmolLM2-135M-Instruct on 127.0.0.1, behind fault-injecting
//! proxies (`leitwerk_testkit::llama`) for 500, 429 with `Retry-After` and a refused API key.
//! Answers are kept short (a few tokens): the point is the client's policy, not the prose.

use std::sync::OnceLock;
use std::time::Duration;

use leitwerk_content::generate::{
    Budget, Chain, Error, Generator, Message, Prices, Request, Sampling,
};
use leitwerk_testkit::llama::{Fault, FaultProxy, LlamaServer};

/// One server for every test of this file; it stops with the test process (its stdin closes).
fn server() -> anyhow::Result<&'static LlamaServer> {
    static SERVER: OnceLock<LlamaServer> = OnceLock::new();
    if let Some(s) = SERVER.get() {
        return Ok(s);
    }
    let started = LlamaServer::start()?;
    Ok(SERVER.get_or_init(|| started))
}

fn generator(name: &str, base_url: &str) -> Generator {
    Generator {
        name: name.into(),
        base_url: base_url.into(),
        model: "smollm2".into(),
        api_key: None,
        sampling: Sampling {
            temperature: 0.0,
            top_p: 1.0,
            max_tokens: 8,
            seed: Some(7),
        },
        prices: Prices {
            input_per_1k: 0.5,
            output_per_1k: 1.5,
        },
        timeout: Duration::from_secs(60),
        retries: 2,
        requests_per_minute: None,
    }
}

fn ask(text: &str) -> Request {
    Request {
        messages: vec![Message::new("user", text)],
        schema: None,
        max_tokens: None,
    }
}

const ROOMY: Budget = Budget {
    max_tokens: 100_000,
    max_cost: None,
};

#[tokio::test]
async fn an_answer_is_charged_at_its_generators_prices() -> anyhow::Result<()> {
    let proxy = FaultProxy::start(&server()?.base_url, None).await?;
    let chain = Chain::new(vec![generator("local", &proxy.base_url)], ROOMY)?;
    let answer = chain.complete(&ask("Name one colour."), 0).await?;
    assert!(!answer.text.trim().is_empty());
    assert_eq!(answer.generator, "local");
    assert!(answer.usage.prompt_tokens > 0 && answer.usage.completion_tokens > 0);
    let expected = answer.usage.prompt_tokens as f64 / 1000.0 * 0.5
        + answer.usage.completion_tokens as f64 / 1000.0 * 1.5;
    assert!((answer.cost - expected).abs() < 1e-12);
    let spend = chain.spend();
    assert_eq!((spend.tokens, spend.calls), (answer.usage.total(), 1));
    Ok(())
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_then_the_next_generator_answers()
-> anyhow::Result<()> {
    let broken = FaultProxy::start(&server()?.base_url, None).await?;
    broken.fail_always(Some(Fault::ServerError));
    let healthy = FaultProxy::start(&server()?.base_url, None).await?;
    let chain = Chain::new(
        vec![
            generator("hosted", &broken.base_url),
            generator("local", &healthy.base_url),
        ],
        ROOMY,
    )?
    .with_backoff(Duration::from_millis(20));
    let answer = chain.complete(&ask("Name one fruit."), 0).await?;
    assert_eq!(answer.generator, "local");
    let log: Vec<(&str, &str, Option<Duration>)> = answer
        .attempts
        .iter()
        .map(|a| (a.generator.as_str(), a.outcome.as_str(), a.waited))
        .collect();
    assert_eq!(
        log,
        [
            (
                "hosted",
                "HTTP 500: server error",
                Some(Duration::from_millis(20))
            ),
            (
                "hosted",
                "HTTP 500: server error",
                Some(Duration::from_millis(40))
            ),
            ("hosted", "HTTP 500: server error", None),
            ("local", "ok", None),
        ]
    );
    assert_eq!(broken.requests(), 3, "the first call and two retries");
    Ok(())
}

#[tokio::test]
async fn retry_after_is_honoured_and_the_same_generator_answers() -> anyhow::Result<()> {
    let proxy = FaultProxy::start(&server()?.base_url, None).await?;
    proxy.fail_next(&[Fault::RateLimited(1)]);
    let chain = Chain::new(vec![generator("local", &proxy.base_url)], ROOMY)?
        .with_backoff(Duration::from_millis(5));
    let answer = chain.complete(&ask("Name one animal."), 0).await?;
    assert_eq!(answer.attempts[0].outcome, "HTTP 429: rate limited");
    assert_eq!(answer.attempts[0].waited, Some(Duration::from_secs(1)));
    assert_eq!(
        (
            answer.attempts[1].outcome.as_str(),
            answer.generator.as_str()
        ),
        ("ok", "local")
    );
    Ok(())
}

#[tokio::test]
async fn a_refused_api_key_goes_to_the_next_generator_without_retrying() -> anyhow::Result<()> {
    let guarded = FaultProxy::start(&server()?.base_url, Some("right-key")).await?;
    let open = FaultProxy::start(&server()?.base_url, None).await?;
    let mut wrong = generator("hosted", &guarded.base_url);
    wrong.api_key = Some("wrong-key".into());
    let shown = format!("{wrong:?}");
    assert!(
        shown.contains("<hidden>") && !shown.contains("wrong-key"),
        "{shown}"
    );
    let chain = Chain::new(vec![wrong, generator("local", &open.base_url)], ROOMY)?;
    let answer = chain.complete(&ask("Name one city."), 0).await?;
    assert_eq!(answer.generator, "local");
    assert!(
        answer.attempts[0].outcome.contains("apiKeySecretRef"),
        "{:?}",
        answer.attempts
    );
    assert_eq!(guarded.requests(), 1);
    Ok(())
}

#[tokio::test]
async fn a_budget_too_small_stops_before_the_spend_could_exceed_it() -> anyhow::Result<()> {
    let proxy = FaultProxy::start(&server()?.base_url, None).await?;
    let tiny = Budget {
        max_tokens: 30,
        max_cost: None,
    };
    let chain = Chain::new(vec![generator("local", &proxy.base_url)], tiny)?;
    let refused = chain
        .complete(&ask("Write a long story about a lighthouse."), 0)
        .await;
    assert!(
        matches!(&refused, Err(Error::BudgetExceeded(why)) if why.contains("maxTokens 30")),
        "{refused:?}"
    );
    assert_eq!(proxy.requests(), 0, "nothing was sent");

    // Room for one call: the second is refused, and the spend stays within the budget.
    let request = ask("Say yes.");
    let one = leitwerk_content::generate::prompt_upper_bound(&request.messages) + 8;
    let chain = Chain::new(
        vec![generator("local", &proxy.base_url)],
        Budget {
            max_tokens: one + 20,
            max_cost: Some(1.0),
        },
    )?;
    chain.complete(&request, 0).await?;
    let second = chain.complete(&ask("Say no."), 0).await;
    assert!(
        matches!(second, Err(Error::BudgetExceeded(_))),
        "{second:?}"
    );
    assert!(chain.spend().tokens <= one + 20);
    assert_eq!(proxy.requests(), 1);

    let pricey = Chain::new(
        vec![Generator {
            prices: Prices {
                input_per_1k: 10.0,
                output_per_1k: 10.0,
            },
            ..generator("hosted", &proxy.base_url)
        }],
        Budget {
            max_tokens: 100_000,
            max_cost: Some(0.01),
        },
    )?;
    let refused = pricey.complete(&ask("Say maybe."), 0).await;
    assert!(
        matches!(&refused, Err(Error::BudgetExceeded(why)) if why.contains("maxCost 0.01")),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test]
async fn identical_requests_are_served_from_the_cache() -> anyhow::Result<()> {
    let proxy = FaultProxy::start(&server()?.base_url, None).await?;
    let chain = Chain::new(vec![generator("local", &proxy.base_url)], ROOMY)?;
    let first = chain.complete(&ask("Name one planet."), 0).await?;
    let again = chain.complete(&ask("  Name one   planet. "), 0).await?;
    assert!(again.cached && !first.cached);
    assert_eq!(
        (again.text.as_str(), again.cost),
        (first.text.as_str(), 0.0)
    );
    assert_eq!(proxy.requests(), 1);
    let spend = chain.spend();
    assert_eq!(
        (spend.cache_hits, spend.saved_tokens),
        (1, first.usage.total())
    );
    Ok(())
}

#[tokio::test]
async fn a_stage_that_needs_structure_gets_json_that_follows_its_schema() -> anyhow::Result<()> {
    let proxy = FaultProxy::start(&server()?.base_url, None).await?;
    let mut g = generator("local", &proxy.base_url);
    g.sampling.max_tokens = 40;
    let chain = Chain::new(vec![g], ROOMY)?;
    let request = Request {
        messages: vec![Message::new(
            "user",
            "Give a title for an article about lead scoring.",
        )],
        schema: Some(serde_json::json!({
            "type": "object",
            "properties": {"title": {"type": "string", "maxLength": 40}},
            "required": ["title"]
        })),
        max_tokens: None,
    };
    let answer = chain.complete(&request, 0).await?;
    let outline: serde_json::Value = serde_json::from_str(&answer.text)?;
    assert!(
        outline["title"].as_str().is_some_and(|t| !t.is_empty()),
        "{outline}"
    );
    Ok(())
}

#[tokio::test]
async fn calls_keep_to_the_generators_rate_limit() -> anyhow::Result<()> {
    // Every call fails at once, so only the rate limit spaces the retry: 60 a minute is one a
    // second, and the limiter says how long the retry waited for its slot.
    let proxy = FaultProxy::start(&server()?.base_url, None).await?;
    proxy.fail_always(Some(Fault::ServerError));
    let mut g = generator("hosted", &proxy.base_url);
    g.retries = 1;
    g.requests_per_minute = std::num::NonZeroU32::new(60);
    let chain = Chain::new(vec![g], ROOMY)?.with_backoff(Duration::from_millis(1));
    let failed = chain.complete(&ask("Name one river."), 0).await;
    let Err(Error::Exhausted(attempts)) = failed else {
        panic!("every call fails: {failed:?}");
    };
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].throttled, None);
    let waited = attempts[1].throttled.unwrap_or_default();
    assert!(
        waited > Duration::from_millis(800) && waited <= Duration::from_secs(1),
        "{waited:?}"
    );
    assert_eq!(proxy.requests(), 2);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_generator_is_named_with_every_try() -> anyhow::Result<()> {
    // Nothing listens on a port the test bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut g = generator("hosted", &format!("http://127.0.0.1:{port}/v1"));
    g.retries = 1;
    let chain = Chain::new(vec![g], ROOMY)?.with_backoff(Duration::from_millis(1));
    let failed = chain.complete(&ask("Name one sea."), 0).await;
    let Err(e @ Error::Exhausted(_)) = failed else {
        panic!("an unreachable generator fails the call: {failed:?}");
    };
    let text = e.to_string();
    assert!(
        text.matches("hosted: unreachable").count() == 2,
        "both tries are named: {text}"
    );
    assert_eq!(chain.spend().tokens, 0, "nothing was spent");
    Ok(())
}
