"""The client side of the CMS-0057 payer APIs (smart/pdex.py): reading result Groups however a payer shapes them,
and whose data an export line is about."""

from __future__ import annotations

from smart_conformance.smart import bulk, pdex


def test_groups_read_by_parameter_name_or_code() -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "MatchedMembers", "resource": {"resourceType": "Group", "id": "g1",
                                                "member": [{"entity": {"reference": "Patient/p1"}}]}},
        {"name": "whatever", "resource": {"resourceType": "Group", "code": {"coding": [{"code": "nomatch"}]},
                                          "contained": [{"resourceType": "Patient", "id": "sc-unknown"}],
                                          "member": [{"entity": {"reference": "#sc-unknown"}}]}}]}
    result = pdex.MatchResult(response=None, groups=pdex.read_parameters(body))  # type: ignore[arg-type]
    assert result.matched_group_id == "g1"
    assert result.category_of("sc-attributed", "p1") == [pdex.MATCHED]
    assert result.category_of("sc-unknown") == [pdex.NON_MATCHED]
    assert result.category_of("sc-other", "p9") == []


def test_patients_referenced_by_subject_patient_beneficiary() -> None:
    assert bulk.patients_referenced({"resourceType": "Patient", "id": "a"}) == {"a"}
    assert bulk.patients_referenced({"resourceType": "Coverage", "beneficiary": {"reference": "Patient/b"}}) == {"b"}
    assert bulk.patients_referenced({"resourceType": "Observation",
                                     "subject": {"reference": "https://x/fhir/Patient/c/_history/2"}}) == {"c"}
    assert bulk.patients_referenced({"resourceType": "Organization", "id": "o"}) == set()


def test_advertised_operations_by_name_or_definition() -> None:
    statement = {"rest": [{"resource": [{"type": "Group", "operation": [
        {"name": "pmm", "definition": "http://hl7.org/fhir/us/davinci-pdex/OperationDefinition/provider-member-match"},
        {"name": "$davinci-data-export"}]}]}]}
    assert {"provider-member-match", "davinci-data-export"} <= pdex.advertised_operations(statement)


def test_consent_negatives_change_one_thing() -> None:
    recipient = {"system": "s", "value": "v"}
    valid = pdex.hrex_consent("sc", "policy#regular", recipient)
    denied = pdex.hrex_consent("sc", "policy#regular", recipient, permit=False)
    assert {k for k in valid if valid[k] != denied[k]} == {"provision"}
    assert valid["provision"]["period"] != pdex.hrex_consent("sc", "policy#regular", recipient, start=-400,
                                                             end=-30)["provision"]["period"]
