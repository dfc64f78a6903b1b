//! The prefix cache: a prompt that starts like an earlier one prefills only its new tokens, and
//! generates exactly what it generates from scratch.

use keel_trainer::init_model::{InitOptions, init_model};
use keel_trainer::model::{Generator, LoadOptions, Model, PrefixCache, SamplingParams, generate};

fn tokens(m: &Model, rows: Vec<(Vec<u32>, SamplingParams)>, cache: Option<&mut PrefixCache>) -> Vec<Vec<u32>> {
    let g = Generator::with_prefixes(&m.transformer, &m.tokenizer, rows, cache).unwrap();
    g.run(None).unwrap().into_iter().map(|g| g.tokens).collect()
}

#[test]
fn prompts_that_share_a_start_reuse_it_and_generate_the_same() {
    let dir = tempfile::tempdir().unwrap();
    init_model(dir.path(), &InitOptions { preset: "tiny".into(), family: keel_trainer::model::Family::Qwen2, seed: 7 }).unwrap();
    let m = Model::load(dir.path(), &LoadOptions::default()).unwrap();
    let params = SamplingParams { max_new_tokens: 10, ..Default::default() };
    let a: Vec<u32> = (0..90).map(|i| 5 + (i * 7) % 200).collect();
    let mut ab = a.clone();
    ab.extend((0..25).map(|i| 9 + (i * 3) % 150));
    let c: Vec<u32> = (0..40).map(|i| 30 + (i * 11) % 180).collect();
    let fresh = generate(&m.transformer, &m.tokenizer, vec![(ab.clone(), params.clone()), (c.clone(), params.clone())], None).unwrap();
    let fresh: Vec<Vec<u32>> = fresh.into_iter().map(|g| g.tokens).collect();

    let mut cache = PrefixCache::new(10_000);
    tokens(&m, vec![(a.clone(), params.clone())], Some(&mut cache));
    assert_eq!((cache.reused_tokens, cache.prefilled_tokens), (0, 90));
    // a + b reuses a's 90 positions; c starts from scratch; both as generated without the cache.
    let got = tokens(&m, vec![(ab.clone(), params.clone()), (c.clone(), params.clone())], Some(&mut cache));
    assert_eq!(got, fresh);
    assert_eq!(cache.reused_tokens, 90);
    assert_eq!(cache.prefilled_tokens, 90 + 25 + 40);
    // The same prompt again reuses all but its last token (whose logits are needed).
    let again = tokens(&m, vec![(ab.clone(), params.clone())], Some(&mut cache));
    assert_eq!(again[0], fresh[0]);
    assert_eq!(cache.reused_tokens, 90 + 114);
    // A cache too small for a prompt keeps nothing, and a cleared one reuses nothing.
    let mut small = PrefixCache::new(50);
    tokens(&m, vec![(a.clone(), params.clone())], Some(&mut small));
    tokens(&m, vec![(ab.clone(), params.clone())], Some(&mut small));
    assert_eq!(small.reused_tokens, 0);
    cache.clear();
    tokens(&m, vec![(ab, params)], Some(&mut cache));
    assert_eq!(cache.reused_tokens, 90 + 114);
}
